"""``python -m fl_app.deploy``: start, seed, run, status, stop, kill, revive, up.

Every command works on one state directory (``--state-dir``, ``$SWIPEFL_DEPLOY_DIR`` or
``outputs/deploy``); a ``DeployError`` is printed as ``error: ...`` with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import fl_app.deploy as package

from .deployment import Deployment
from .errors import DeployError
from .runs import RunResult
from .state import DEFAULT_STATE_DIR


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fl_app.deploy", description=(package.__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--state-dir",
        default=os.environ.get("SWIPEFL_DEPLOY_DIR", str(DEFAULT_STATE_DIR)),
        help="where PIDs, logs, devices and runs live (default $SWIPEFL_DEPLOY_DIR or outputs/deploy)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _layout_args(sub.add_parser("start", help="start every component and wait until ready"))
    p_seed = sub.add_parser("seed", help="post labelled synthetic swipes to every device")
    p_seed.add_argument("--swipes", type=int, default=120)
    p_seed.add_argument("--seed", type=int, default=5000)
    p_run = sub.add_parser("run", help="flwr run against the deployment (+ Hydra overrides)")
    p_run.add_argument("overrides", nargs="*", help="e.g. federation.num_rounds=3")
    p_run.add_argument("--timeout", type=float, default=1800.0)
    sub.add_parser("status", help="processes, runs and devices").add_argument(
        "--json", action="store_true"
    )
    p_stop = sub.add_parser("stop", help="stop everything (or the named components)")
    p_stop.add_argument("names", nargs="*")
    p_kill = sub.add_parser("kill", help="SIGKILL one component (a fault drill)")
    p_kill.add_argument("name")
    p_revive = sub.add_parser("revive", help="start stopped components again (same ports/data)")
    p_revive.add_argument("names", nargs="+")
    p_up = sub.add_parser("up", help="start, seed, run, wait for the sidecars' reload, stop")
    _layout_args(p_up)
    p_up.add_argument("--swipes", type=int, default=120)
    p_up.add_argument("--keep", action="store_true", help="leave it running afterwards")
    p_up.add_argument("--timeout", type=float, default=1800.0)
    p_up.add_argument("overrides", nargs="*")
    return parser


def _layout_args(p: argparse.ArgumentParser) -> None:
    """The options of `start` and `up`: what `Deployment.create` lays out."""
    p.add_argument("--nodes", type=int, default=2, help="SuperNodes (devices), default 2")
    p.add_argument("--no-sidecars", action="store_true", help="SuperNodes only")
    p.add_argument("--store", choices=("s3", "local"), default="s3")
    p.add_argument("--bucket", default="swipe-fl")
    p.add_argument("--reload-interval", type=float, default=2.0, help="sidecar reload (s)")
    p.add_argument("--torch-threads", type=int, default=1, help="per ClientApp")
    p.add_argument("--experiment", default="deploy", help="conf/experiment/<name>.yaml")
    p.add_argument(
        "--secure",
        action="store_true",
        help="TLS to the SuperLink (a private CA) and SuperNode authentication",
    )


# -- the commands ------------------------------------------------------------------------------


def _create_and_start(args: argparse.Namespace) -> Deployment:
    dep = Deployment.create(
        args.state_dir,
        nodes=args.nodes,
        sidecars=not args.no_sidecars,
        store=args.store,
        bucket=args.bucket,
        reload_interval_s=args.reload_interval,
        torch_threads=args.torch_threads,
        experiment=args.experiment,
        secure=args.secure,
    )
    print(f"starting deployment {dep.id} in {dep.state_dir}", flush=True)
    dep.start()
    _print_status(dep.status())
    return dep


def _start(args: argparse.Namespace) -> int:
    _create_and_start(args)
    return 0


def _up(args: argparse.Namespace) -> int:
    dep = _create_and_start(args)
    try:
        print(f"seeding: {dep.seed(args.swipes)} swipes per device", flush=True)
        result = dep.run(args.overrides, timeout_s=args.timeout)
        _report_run(result)
        if result.ok and dep.state.settings.sidecars:
            release = dep.wait_for_release()
            print(f"every sidecar serves {release['run_id']}/{release['round']}")
        _print_status(dep.status())
        return 0 if result.ok else 1
    finally:
        if not args.keep:
            left = dep.stop()
            print("stopped" + (f"; SURVIVORS {left}" if left else ""))


def _seed(args: argparse.Namespace) -> int:
    dep = Deployment.load(args.state_dir)
    print(f"devices hold {dep.seed(args.swipes, args.seed)} swipes")
    return 0


def _run(args: argparse.Namespace) -> int:
    result = Deployment.load(args.state_dir).run(args.overrides, timeout_s=args.timeout)
    _report_run(result)
    return 0 if result.ok else 1


def _status(args: argparse.Namespace) -> int:
    status = Deployment.load(args.state_dir).status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)
    return 0


def _stop(args: argparse.Namespace) -> int:
    left = Deployment.load(args.state_dir).stop(args.names or None)
    print(f"stopped {', '.join(args.names) or 'everything'}")
    if left:
        print(f"error: processes {left} survived", file=sys.stderr)
        return 1
    return 0


def _kill(args: argparse.Namespace) -> int:
    print(f"killed {args.name}: pids {Deployment.load(args.state_dir).kill(args.name)}")
    return 0


def _revive(args: argparse.Namespace) -> int:
    Deployment.load(args.state_dir).start(args.names)
    print(f"started {', '.join(args.names)}")
    return 0


_COMMANDS = {
    "start": _start,
    "up": _up,
    "seed": _seed,
    "run": _run,
    "status": _status,
    "stop": _stop,
    "kill": _kill,
    "revive": _revive,
}


# -- printing ----------------------------------------------------------------------------------


def _print_status(status: dict[str, Any]) -> None:
    print(f"deployment {status['id']} in {status['state_dir']}")
    for name, comp in status["components"].items():
        state = "ready" if comp["ready"] else ("running" if comp["running"] else "stopped")
        print(f"  {name:<12} {state:<8} pid {comp['pid'] or '-':<8} {comp['what']}")
    for run in status.get("runs", []):
        elapsed = run.get("elapsed")
        took = f" ({float(elapsed):.0f} s)" if isinstance(elapsed, int | float) else ""
        print(f"  run {run['run-id']}: {run['status']}{took}")
    for i, dev in enumerate(status["devices"]):
        serving = dev.get("serving")
        what = f"{serving['run_id']}/{serving['round']}" if serving else "nothing"
        print(
            f"  device-{i}: {dev.get('swipes', '?')} swipes, "
            f"{dev.get('new_since_training', '?')} new since training"
            + (f", sidecar {dev['sidecar']} serves {what}" if dev.get("sidecar") else "")
        )


def _report_run(result: RunResult) -> None:
    print(f"Flower run {result.flwr_run_id} status: {result.status} ({result.seconds:.0f} s)")
    print(f"run log: {result.log_path}")
    for line in result.log().splitlines():
        if line.startswith(("round ", "run ", "checkpoints:", "metrics:", "NOT STORED", "  ")):
            print(f"  {line}")
    if not result.ok and result.details:
        print(f"error: {result.details}", file=sys.stderr)
