"""The command line lists its commands, each has --help, and data comes from a flag or env."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from skin_model.cli import build_parser, main


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in build_parser()._subparsers._group_actions[0].choices:
        assert command in out


def test_each_subcommand_has_help() -> None:
    choices = build_parser()._subparsers._group_actions[0].choices
    for name, sub in choices.items():
        assert sub.format_help().startswith("usage: python -m skin_model " + name)


def test_missing_data_location_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("SKIN_DATA_DIR", raising=False)
    assert main(["audit"]) == 2
    assert "SKIN_DATA_DIR" in capsys.readouterr().err


def test_audit_command_writes_json_and_csv(synthetic_data, tmp_path) -> None:
    out = tmp_path / "audit"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "skin_model",
            "audit",
            "--data",
            str(synthetic_data[0]),
            "--out",
            str(out),
            "--json",
            str(tmp_path / "f.json"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "cross-class duplicate groups: 1" in result.stdout
    findings = json.loads((tmp_path / "f.json").read_text())
    for key in (
        "cross_class_duplicate_groups",
        "train_test_leaks",
        "near_duplicate_groups",
        "official_label_disagreements",
        "unreadable",
        "class_counts",
    ):
        assert key in findings
    assert (out / "manifest.csv").read_text().splitlines()[0].startswith("path,source,isic_id")
    assert str(synthetic_data[0]) not in (out / "manifest.csv").read_text()  # relative paths only


def test_train_flags_reach_the_config() -> None:
    from skin_model.cli import train_config_from_args

    args = build_parser().parse_args(
        [
            "train",
            "--arch",
            "effnet_lite0",
            "--epochs",
            "3",
            "--lr",
            "0.01",
            "--tta",
            "--feature-views",
            "2",
            "--unfreeze-from",
            "block5_expand_conv",
            "--no-class-balance",
            "--label-smoothing",
            "0.2",
            "--weight-decay",
            "0.05",
            "--zoom",
            "0.3",
            "--mixup",
            "0.4",
            "--ema",
            "0.9",
            "--train-bn",
            "--stochastic-depth",
            "0.2",
            "--source-balanced",
            "--low-res",
            "0.5",
            "--logit-adjust",
            "1.5",
            "--camera",
            "0.3",
            "--layer-decay",
            "0.8",
        ]
    )
    config = train_config_from_args(args)
    assert (config.arch, config.epochs, config.learning_rate, config.tta) == ("effnet_lite0", 3, 0.01, True)
    assert (config.feature_views, config.unfreeze_from) == (2, "block5_expand_conv")
    assert (config.class_balanced, config.label_smoothing) == (False, 0.2)
    assert (config.weight_decay, config.zoom, config.mixup_alpha, config.ema_momentum) == (0.05, 0.3, 0.4, 0.9)
    assert config.train_batch_norm and config.stochastic_depth == 0.2 and config.source_balanced
    assert config.low_res == 0.5 and config.logit_adjustment == 1.5
    assert config.camera == 0.3 and config.layer_decay == 0.8
    default = train_config_from_args(build_parser().parse_args(["train"]))
    assert not default.train_batch_norm and default.layer_decay is None
