"""``auto`` precision: the choice with the hardware capability mocked both ways, and where it applies."""
import pytest
import torch
from distill.models import create_model

import distill.precision as precision
from distill.teacher import FrozenTeacher, TeacherSpec


@pytest.fixture
def fast_bf16_cpu(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)


@pytest.fixture
def avx2_cpu(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)


def test_cpu_with_native_bf16_gets_bf16(fast_bf16_cpu):
    choice = precision.choose("cpu")
    # bf16 for the frozen teacher's forwards only: training (a tiny student) stays float32 on a CPU
    assert (choice.teacher, choice.trainer) == ("bf16", "32-true") and "native bf16" in choice.reason
    assert precision.resolve("auto", "cpu") == "bf16"


def test_cpu_without_bf16_gets_float32(avx2_cpu):
    choice = precision.choose("cpu")
    assert (choice.teacher, choice.trainer) == ("32", "32-true") and "slower" in choice.reason
    assert precision.resolve("auto", "cpu") == "32"
    assert precision.resolve("bf16", "cpu") == "bf16"  # forcing a precision still works


def test_cuda_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.choose("cuda").trainer == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert (precision.choose("cuda").teacher, precision.choose("cuda").trainer) == ("32", "16-mixed")


def test_teacher_auto_runs_in_the_resolved_precision(avx2_cpu, monkeypatch):
    teacher = FrozenTeacher(create_model("nano", 3, input_size=32), "auto")
    assert teacher.precision == "32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert teacher.precision == "bf16"
    assert TeacherSpec().precision == "auto"
    with pytest.raises(ValueError, match="teacher.precision='fp16'"):
        TeacherSpec(precision="fp16")


@pytest.mark.parametrize("fixture,expected", [("avx2_cpu", "32-true"), ("fast_bf16_cpu", "32-true")])
def test_cli_trainer_precision_auto(demo_root, tmp_path, request, capsys, monkeypatch, fixture, expected):
    from distill.cli import build_cli

    request.getfixturevalue(fixture)
    monkeypatch.setattr("distill.console._SAID", set())  # printed once a process: this test's choice is printed
    cli = build_cli({"data": {"root": str(demo_root)}, "trainer": {"default_root_dir": str(tmp_path)}}, run=False)
    assert cli.trainer.precision == expected
    assert "precision auto:" in capsys.readouterr().out
    forced = build_cli({"data": {"root": str(demo_root)}, "precision": "32"}, run=False)
    assert forced.trainer.precision == "32-true"
    from_yaml = build_cli({"data": {"root": str(demo_root)}, "precision": 32}, run=False)  # `--set precision=32`
    assert from_yaml.trainer.precision == "32-true"
    explicit = build_cli({"data": {"root": str(demo_root)}, "trainer": {"precision": "bf16-mixed"}}, run=False)
    assert explicit.trainer.precision == "bf16-mixed"  # trainer.precision set by the user wins
