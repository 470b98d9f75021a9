"""`python -m fl_app.datasets measure`: a checkpoint measured on a file of anyone's labelled swipes, by the
project's protocol or as the sidecar serves it, refusing people the checkpoint already saw."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fl_app.base import base_dir
from fl_app.checkpoints.format import read_checkpoint_dir, read_manifest_dir, write_checkpoint_dir
from fl_app.datasets.__main__ import main
from fl_app.datasets.real import REAL_SWIPES_ENV, load_real
from fl_app.decoder.evaluation import rank_of
from fl_app.decoder.spec import read_model_dir


def swipe_line(row, **change) -> str:
    """A real row in the file format the command reads (the study's own)."""
    s = row.swipe
    obj = {
        "user": row.user,
        "seq": row.seq,
        "word": s.word,
        "keyboard": s.keyboard.to_spec(),
        "points": s.points.tolist(),
    }
    obj.update(change)
    return json.dumps({k: v for k, v in obj.items() if v is not None})


def dev_rows(users: int, per_user: int):
    rows = load_real("dev")
    chosen = sorted({r.user for r in rows})[:users]
    return [r for u in chosen for r in [r for r in rows if r.user == u][:per_user]]


def run(capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = main(["measure", *map(str, argv)])
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    return code, (json.loads(lines[-1]) if code == 0 else None), out.err


def test_as_served_reports_what_the_sidecars_decoder_gives_and_counts_each_refusal(
    real_swipes_dir, tmp_path, capsys
):
    rows = dev_rows(users=2, per_user=6)
    anonymous = rows[0]
    bad_time = swipe_line(rows[1], points=rows[1].swipe.points[::-1].tolist())
    lines = [swipe_line(r) for r in rows] + [swipe_line(anonymous, user=None), bad_time, "{oops"]
    path = tmp_path / "people.jsonl"
    path.write_text("\n".join(lines) + "\n")

    code, report, err = run(capsys, path, "--as-served")
    assert code == 0, err

    spec, model, manifest = read_model_dir(base_dir("en"))
    decoder = spec.build_decoder(model)  # what the sidecar builds from a checkpoint
    measured = rows + [anonymous]
    hits = [
        rank_of(r.swipe.word, decoder.decode(r.swipe.points, r.swipe.keyboard)) == 1
        for r in measured
    ]
    assert report["swipes"] == len(measured) and report["users"] == 3  # the anonymous row alone
    assert report["refused"] == {"DECREASING_TIME": 1, "BAD_JSON": 1}
    assert report["model_sha256"] == manifest["sha256"]
    assert report["unseen"].startswith("none of the file's users")
    (fig,) = report["figures"]
    assert fig["top1"] == pytest.approx(sum(hits) / len(hits))
    assert fig["n"] == len(measured) and fig["top1_ci"][0] <= fig["top1"] <= fig["top1_ci"][1]
    assert fig["tuned"]["fusion"] == spec.fusion.to_dict()  # its own weights, nothing tuned
    lexicon = spec.lexicon()
    assert fig["coverage"] == pytest.approx(
        sum(r.swipe.word in lexicon for r in measured) / len(measured)
    )


def test_users_the_checkpoint_trained_on_are_refused_unless_allowed(
    real_swipes_dir, tmp_path, capsys
):
    trained = load_real("public-train")[:3]  # the shipped base's manifest records public-train
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(swipe_line(r) for r in trained + dev_rows(1, 3)) + "\n")

    code, _, err = run(capsys, path, "--as-served")
    assert code == 2
    assert trained[0].user in err and "public-train" in err and "--allow-seen" in err

    code, report, err = run(capsys, path, "--as-served", "--allow-seen")
    assert code == 0, err
    assert report["swipes"] == 6 and "not checked" in report["unseen"]

    # --parts keeps only the users of a split part: the study's own file can be measured on dev
    code, report, err = run(capsys, path, "--as-served", "--parts", "dev")
    assert code == 0, err
    assert report["swipes"] == 3


def federated_round(folder, start: dict) -> None:
    """A checkpoint folder as a federation round leaves one: the base's tensors and decoder,
    and the run's config naming the checkpoint the run started from."""
    tensors, manifest = read_checkpoint_dir(base_dir("en"))
    config = {"init": "base", "init_checkpoint": start}
    write_checkpoint_dir(folder, tensors, {"decoder": manifest["decoder"], "config": config})


def test_a_federated_round_inherits_the_people_its_start_learned_from(
    real_swipes_dir, tmp_path, capsys
):
    trained = load_real("public-train")[:2]
    path = tmp_path / "trained.jsonl"
    path.write_text("\n".join(swipe_line(r) for r in trained) + "\n")
    base = read_manifest_dir(base_dir("en"))

    # recorded where the run started it (another machine's path: the base is found by sha256)
    federated_round(tmp_path / "round", {"dir": "/elsewhere/base/en", "sha256": base["sha256"]})
    code, _, err = run(capsys, path, "--model", tmp_path / "round", "--as-served")
    assert code == 2 and "public-train" in err and trained[0].user in err

    # a start that is nowhere here: which people it learned from cannot be told
    federated_round(tmp_path / "lost", {"dir": "/elsewhere/run", "sha256": "0" * 64})
    code, _, err = run(capsys, path, "--model", tmp_path / "lost", "--as-served")
    assert code == 2 and "/elsewhere/run" in err and "--allow-seen" in err


def test_without_the_real_swipes_only_the_served_figure_can_be_measured(
    real_swipes_dir, tmp_path, capsys, monkeypatch
):
    path = tmp_path / "people.jsonl"
    path.write_text("\n".join(swipe_line(r) for r in dev_rows(1, 4)) + "\n")
    monkeypatch.setenv(REAL_SWIPES_ENV, str(tmp_path / "nowhere"))

    code, report, err = run(capsys, path, "--as-served")
    assert code == 0, err
    assert report["swipes"] == 4 and report["unseen"].startswith("not checked")

    code, _, err = run(capsys, path)  # the protocol tunes on public-val: it needs them
    assert code == 2 and REAL_SWIPES_ENV in err and "--as-served" in err


def test_bad_input_gets_a_clear_error(real_swipes_dir, tmp_path, capsys):
    empty = tmp_path / "nothing.jsonl"
    empty.write_text("{oops\n")
    code, _, err = run(capsys, empty, "--as-served")
    assert code == 2 and "no valid labelled swipes" in err and "BAD_JSON" in err

    code, _, err = run(capsys, tmp_path / "absent.jsonl", "--as-served")
    assert code == 2 and "absent.jsonl" in err

    code, _, err = run(capsys, empty, "--lexicons", "10k+words,50k")
    assert code == 2 and "50k" in err and "100k+words" in err

    code, _, err = run(capsys, empty, "--limit", "-1", "--as-served")
    assert code == 2 and "--limit" in err

    code, _, err = run(capsys, empty, "--model", tmp_path, "--as-served")
    assert code == 2 and "manifest.json" in err


@pytest.mark.slow
def test_the_protocol_tunes_on_public_val_under_each_lexicon(real_swipes_dir, tmp_path, capsys):
    rows = dev_rows(users=3, per_user=5)
    path = tmp_path / "people.jsonl"
    path.write_text("\n".join(swipe_line(r) for r in rows) + "\n")

    code, report, err = run(
        capsys, path, "--lexicons", "10k+words,100k", "--val-limit", "40", "--template"
    )
    assert code == 0, err
    assert report["unseen"] == "none of the file's users is in public-train, public-val"
    figs = {(f["decoder"], f["lexicon"]): f for f in report["figures"]}
    assert set(figs) == {
        (who, lex)
        for who in ("shipped base", "template (SHARK2, tuned)")
        for lex in ("10k + evaluated words", "100k as shipped")
    }
    # the evaluated words are added to the lexicon: every swipe's word can be typed
    assert figs["shipped base", "10k + evaluated words"]["coverage"] == 1.0
    assert "val_top1" in figs["shipped base", "100k as shipped"]["tuned"]  # chosen on public-val
    assert all(f["n"] == len(rows) for f in report["figures"])


def test_the_datasets_command_loads_no_torch_until_a_measurement_runs():
    """`import` and `split` stay quick: the decoder and torch load inside `measure` only."""
    code = "import sys, fl_app.datasets.__main__ as m; m._parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
