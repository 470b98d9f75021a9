"""The federation deployed on loopback (fl_app/deploy/): layout, process control, and the whole
device-to-server loop end to end with real processes (S3 server, SuperLink, SuperNodes, sidecars).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import httpx
import pytest

from fl_app.checkpoints import CheckpointAuthError
from fl_app.decoder.lexicon import load_lexicon
from fl_app.deploy.cli import main
from fl_app.deploy.probes import free_ports
from fl_app.deploy.processes import MARK_COMPONENT, MARK_ID, marked_processes, pid_alive
from fl_app.deploy.weed import serves_every_volume, volumes_on_disk
from fl_app.swipes.format import split_of
from fl_app.swipes.store import SwipeStore
from fl_app.synthetic.users import make_user

# -- layout and process control (seconds) ------------------------------------------------------


def test_layout_keeps_secrets_out_of_the_state_and_commands(deployment_factory):
    dep = deployment_factory(nodes=3, sidecars=True)
    state_text = (dep.state_dir / "state.json").read_text()
    secrets = json.loads((dep.state_dir / "secrets.json").read_text())
    assert stat.S_IMODE((dep.state_dir / "secrets.json").stat().st_mode) == 0o600
    values = [
        secrets["s3"][r][k] for r in ("server", "device") for k in ("access_key", "secret_key")
    ]
    values += list(secrets["sidecar_tokens"].values())
    assert len(set(values)) == len(values)
    assert not any(v in state_text for v in values)
    for name in dep.component_names():  # command lines are public (ps): secrets go in env
        command = " ".join(dep.component(name).cmd)
        assert not any(v in command for v in values), name
    assert dep.component_names() == [
        "s3", "superlink", "supernode-0", "supernode-1", "supernode-2",
        "sidecar-0", "sidecar-1", "sidecar-2",
    ]  # fmt: skip
    for i in range(3):
        assert dep.store_path(i).is_file()  # the SuperNode needs the file before any swipe

    node = dep.component("supernode-1")
    assert node.cmd[node.cmd.index("--superlink") + 1] == dep.superlink_address
    assert f"swipe-store='{dep.store_path(1)}'" in node.cmd[node.cmd.index("--node-config") + 1]
    assert not any(k.startswith("SWIPEFL_S3_") for k in node.env)  # a SuperNode has no bucket keys
    assert node.env[MARK_ID] == dep.id and node.env[MARK_COMPONENT] == "supernode-1"
    link = dep.component("superlink").env
    sidecar = dep.component("sidecar-1").env
    assert link["SWIPEFL_S3_ACCESS_KEY"] == secrets["s3"]["server"]["access_key"]
    assert sidecar["SWIPEFL_S3_ACCESS_KEY"] == secrets["s3"]["device"]["access_key"]
    assert sidecar["SWIPEFL_SWIPE_STORE"] == str(dep.store_path(1))
    assert sidecar["SWIPEFL_API_TOKEN"] == secrets["sidecar_tokens"]["device-1"]

    items = dep.run_overrides(["federation.num_rounds=1", "run_id=mine", "paths.outputs=/a b"])
    assert items[0] == "experiment=deploy" and "checkpoints=s3" in items
    assert "federation.min_available_nodes=3" in items
    assert [i for i in items if i.startswith("run_id=")][-1] == "run_id=mine"  # the caller wins
    with pytest.raises(Exception, match="single quotes"):
        dep.run_overrides(["x='y'"])


def test_stop_sweeps_every_process_carrying_the_marker(deployment_factory):
    """Processes Flower starts in their own session (SuperExec, ServerApp) escape a process
    group; the marker in their environment finds them."""
    dep = deployment_factory(nodes=1, sidecars=False, store="local")
    env = {**os.environ, MARK_ID: dep.id, MARK_COMPONENT: "superlink"}
    code = (
        "import subprocess, sys, time;"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],"
        " start_new_session=True); time.sleep(120)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    dep.state.pids["superlink"] = parent.pid
    deadline = time.monotonic() + 20
    while len(marked_processes(dep.id)) < 2:
        assert time.monotonic() < deadline, marked_processes(dep.id)
        time.sleep(0.05)
    found = marked_processes(dep.id)
    assert set(found.values()) == {"superlink"}
    assert dep.running() == ["superlink"]
    assert dep.stop(grace_s=2) == []
    parent.wait(timeout=5)
    assert dep.leftovers() == {} and not any(pid_alive(p) for p in found)
    assert dep.state.pids == {} and dep.state.stopped_at is not None
    saved = json.loads((dep.state_dir / "state.json").read_text())
    assert saved["pids"] == {} and saved["stopped_at"] == dep.state.stopped_at


def test_s3_identities_server_writes_devices_only_read(deployment_factory):
    dep = deployment_factory(nodes=1, sidecars=False)
    dep.start(["s3"])
    server = dep.checkpoint_store("server").backend
    device = dep.checkpoint_store("device").backend
    server.put_bytes("releases/probe.json", b"{}")
    assert device.get_bytes("releases/probe.json") == b"{}"
    with pytest.raises(CheckpointAuthError, match="AccessDenied"):
        device.put_bytes("releases/latest.json", b"{}")
    # A fault drill: SIGKILL, then the same server again on the same port and data. Ready means
    # the old object reads at once (weed answers before its volumes are located: about one
    # restart in ten failed this read before the readiness check waited for them).
    for _ in range(3):
        killed = dep.kill("s3")
        assert killed and not dep.is_running("s3")
        dep.start(["s3"])
        assert server.get_bytes("releases/probe.json") == b"{}"
    assert dep.stop() == []


def test_s3_readiness_waits_for_every_volume_on_disk(deployment_factory, tmp_path):
    dep = deployment_factory(nodes=1, sidecars=False)
    dep.start(["s3"])
    dep.checkpoint_store("server").backend.put_bytes("releases/probe.json", b"{}")
    data_dir, master = dep.state_dir / "s3" / "data", dep.state.ports.weed["master.port"]
    held = volumes_on_disk(data_dir)
    assert held and serves_every_volume(data_dir, master)
    # A data dir holding one more volume than the master knows of is not ready yet.
    unknown = tmp_path / "more"
    unknown.mkdir()
    for volume in held | {max(held) + 1}:
        (unknown / f"swipe-fl_{volume}.dat").touch()
    assert volumes_on_disk(unknown) == held | {max(held) + 1}
    assert not serves_every_volume(unknown, master)
    assert dep.stop() == []


def test_cli_status_of_a_deployment_that_is_not_running(deployment_factory, capsys):
    dep = deployment_factory(nodes=2, sidecars=True, store="local")
    assert main(["--state-dir", str(dep.state_dir), "status"]) == 0
    out = capsys.readouterr().out
    assert f"deployment {dep.id}" in out and "supernode-1  stopped" in out
    assert "device-1: 0 swipes, 0 new since training" in out
    assert main(["--state-dir", str(dep.state_dir / "nowhere"), "stop"]) == 1


# -- the whole loop, end to end (about a minute and a half on 2 cores) -------------------------


def ending_in_a_heldout_row(at_least: int, heldout_fraction: float) -> int:
    """A swipe count whose newest row (id n in a fresh store) falls in the held-out split.

    Such a store checks that a round marks the whole store as trained, not only its newest
    training row (a held-out row newer than that would stay "new" forever).
    """
    n = at_least
    while split_of(n, heldout_fraction) != "heldout":
        n += 1
    return n


@pytest.mark.slow
def test_whole_loop_from_keyboards_to_release_and_back(deployment_factory):
    dep = deployment_factory(nodes=2, sidecars=True, reload_interval_s=0.5)
    heldout = dep.state.settings.heldout_fraction
    counts = [ending_in_a_heldout_row(110, heldout), 140]
    dep.start()
    pids = dict(dep.state.pids)
    assert len(pids) == 6 and all(pid_alive(p) for p in pids.values())

    # Keyboards post labelled swipes to their sidecars, which write the SuperNodes' stores.
    lexicon = load_lexicon("en", 1000)
    for i, n in enumerate(counts):
        swipes = [s.to_dict() for s in make_user(700 + i, lexicon).swipes(n)]
        auth = {"Authorization": f"Bearer {dep.sidecar_token(i)}"}
        anonymous = httpx.post(f"{dep.sidecar_url(i)}/api/v1/swipes", json=swipes[0], timeout=30)
        assert anonymous.status_code == 401  # writes need the device's token
        with httpx.Client(base_url=dep.sidecar_url(i), headers=auth, timeout=30) as client:
            for start in range(0, n, 100):
                res = client.post("/api/v1/swipes", json={"swipes": swipes[start : start + 100]})
                assert res.status_code == 202, res.text
            stats = client.get("/api/v1/stats").json()
        assert stats["swipes"]["total"] == n and stats["swipes"]["new_since_training"] == n
        # Nothing released yet: the device answers from the shipped base meanwhile.
        assert stats["model"]["loaded"] is True and stats["model"]["version"]["base"] is True
        counts_i = dep.store_counts(i)  # the very store the SuperNode trains on
        assert (
            counts_i["total"] == counts_i["max_id"] == n
        )  # so row n, held out on device 0, is newest

    result = dep.run(["federation.num_rounds=2", "federation.fraction_evaluate=0"], timeout_s=420)
    log = result.log()
    assert result.ok, (result.status, result.details, log[-4000:])
    records = result.records()
    assert [r["round"] for r in records] == [0, 1, 2]
    for r in records[1:]:
        assert (
            r["clients"] == {"sampled": 2, "ok": 2, "failed": 0, "rejected": 0, "clipped": 0}
            and r["accepted"]
        ), r
        assert r["stored"] is True
    assert "round 2/2 | clients ok 2 failed 0" in log

    # Both sidecars load the new release by themselves (watcher, no reload call) ...
    release = dep.wait_for_release(timeout_s=60)
    assert release["run_id"] == result.run_id and release["round"] in (1, 2)
    store = dep.checkpoint_store("server")
    assert store.list_rounds(result.run_id) == [0, 1, 2]
    for i, n in enumerate(counts):
        stats = dep.sidecar_stats(i)
        version = stats["model"]["version"]
        assert (version["run_id"], version["round"]) == (release["run_id"], release["round"])
        assert version["sha256"] == release["sha256"] and not version["personalized"]
        # ... and the swipes they stored were all used by the finished training rounds.
        assert stats["swipes"]["total"] == n and stats["swipes"]["new_since_training"] == 0
        prediction = httpx.post(
            f"{dep.sidecar_url(i)}/api/v1/predict",
            json={
                k: v
                for k, v in make_user(900, lexicon).swipes(1)[0].to_dict().items()
                if k != "word"
            },
            headers={"Authorization": f"Bearer {dep.sidecar_token(i)}"},  # predictions too
            timeout=30,
        )
        assert prediction.status_code == 200
        assert prediction.headers["X-Model-Version"] == f"{release['run_id']}/{release['round']}"

    # Devices hold read-only credentials: a sidecar could never move the release.
    with pytest.raises(CheckpointAuthError):
        dep.checkpoint_store("device").backend.put_bytes("releases/latest.json", b"{}")

    # Every process started is stopped, including those Flower started for us.
    assert dep.stop() == []
    assert dep.leftovers() == {}
    assert not any(pid_alive(p) for p in pids.values())


# -- TLS and SuperNode authentication (about 40 s) ----------------------------------------------


@pytest.mark.slow
def test_secure_deployment_tls_and_only_registered_supernodes(deployment_factory, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    dep = deployment_factory(nodes=2, sidecars=False, secure=True)
    lexicon = load_lexicon("en", 1000)
    for i in range(2):
        with SwipeStore(dep.store_path(i)) as store:
            store.append_many(make_user(800 + i, lexicon).swipes(100), source="synthetic")
    dep.start()
    assert "--insecure" not in dep.component("superlink").cmd
    assert "root-certificates" in (dep.flwr_home / "config.toml").read_text()
    assert set(dep.state.registered) == {"supernode-0", "supernode-1"}

    # A SuperNode with a key the operator never registered is refused (and exits).
    key = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    (tmp_path / "intruder").write_bytes(key)
    os.chmod(tmp_path / "intruder", 0o600)
    node = dep.component("supernode-1")
    cmd = list(node.cmd)
    cmd[cmd.index("--auth-supernode-private-key") + 1] = str(tmp_path / "intruder")
    cmd[cmd.index("--port") + 1] = str(free_ports(1)[0])
    env = {**node.env, MARK_COMPONENT: "intruder", "FLWR_HOME": str(tmp_path / "intruder-home")}
    with open(tmp_path / "intruder.log", "wb") as log:
        intruder = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    assert intruder.wait(timeout=120) != 0
    assert "Failed to activate SuperNode" in (tmp_path / "intruder.log").read_text()

    result = dep.run(["federation.num_rounds=1", "federation.fraction_evaluate=0"], timeout_s=300)
    assert result.ok, (result.status, result.details, result.log()[-4000:])
    assert result.records()[1]["clients"] == {
        "sampled": 2,
        "ok": 2,
        "failed": 0,
        "rejected": 0,
        "clipped": 0,
    }
    nodes = json.loads(dep.flwr("supernode", "list", "swipefl-deploy", "--format", "json").stdout)
    online = {n["node-id"] for n in nodes["nodes"] if n["status"] == "online"}
    assert online == set(dep.state.registered.values())
    assert dep.stop() == []
