"""TensorFlow's C++ start-up notices stay off a command's stderr; anything else on fd 2 shows.

The CLI test runs ``fraudstream train`` in a subprocess (it imports TensorFlow, trains one
epoch on a small simulated file): about 15 s. Its control, a bare ``import keras``, shows
that this TensorFlow does print the notices, so the test would fail if they leaked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fraudstream.config.simulate import SimulatorSettings
from fraudstream.models.backend import fd2_without, is_notice
from fraudstream.simulate.engine import simulate
from fraudstream.simulate.output import write_transactions

REPO = Path(__file__).resolve().parents[2]
ABSL = "All log messages before absl::InitializeLog()"
ONEDNN = "oneDNN custom operations are on"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)  # oneDNN on, as by default: the notices are printed
    return env


def test_a_cli_command_prints_neither_notice(tmp_path):
    data = tmp_path / "tx.csv"
    write_transactions(simulate(SimulatorSettings(customers=100, terminals=200), days=30, seed=0), data,
                       inline_labels=True)
    bare = subprocess.run([sys.executable, "-c", "import keras"], capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert ABSL in bare.stderr and ONEDNN in bare.stderr  # this TensorFlow prints them

    run = subprocess.run(
        [sys.executable, "-m", "fraudstream", "train", "--data", str(data), "--out", str(tmp_path / "model"),
         "--epochs", "1", "--train-days", "20"],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "model").is_dir()
    assert ABSL not in run.stderr and ONEDNN not in run.stderr, run.stderr


def test_other_lines_on_fd2_pass_through_in_order(capfd):
    notice = b"I0000 00:00:1796284678.535343    8026 port.cc:153] oneDNN custom operations are on. You may see\n"
    with fd2_without():
        os.write(2, b"E0000 a real error\n")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, notice)
        os.write(2, b"W0000 a warning\n")
        os.write(2, b"last line, no newline")
    assert capfd.readouterr().err == "E0000 a real error\nW0000 a warning\nlast line, no newline"


def test_lines_written_before_an_exception_still_show(capfd):
    try:
        with fd2_without():
            os.write(2, b"Traceback from C++\n")
            raise ImportError("libtensorflow missing")
    except ImportError:
        pass
    assert capfd.readouterr().err == "Traceback from C++\n"


def test_only_the_exact_notices_match():
    assert is_notice(b"I0000 00:00:1796284678.535343    8026 port.cc:153] oneDNN custom operations are on. x\n")
    assert not is_notice(b"W0000 00:00:1796284678.535343    8026 port.cc:153] oneDNN custom operations are on. x\n")
    assert not is_notice(b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR; and more\n")
    assert not is_notice(b"F0000 00:00:1.0 1 some.cc:1] Check failed\n")
