"""What a failure in code the project does not own does to a run (the user's env: test_env_failures.py):
  * TensorBoard's writer: a secondary record; the run warns once and goes on, eval.csv complete;
  * matplotlib writing a figure, Pillow writing a GIF: one line naming the file, no temp file left,
    the previous file intact;
  * MuJoCo's GL / an env that cannot draw: one line (tests/test_own_env.py, the drawless env);
  * a full disk and a killed process: tests/test_runs.py."""

import os

import matplotlib.pyplot as plt
import numpy as np
import pytest

import iac
import plots


def test_a_failing_tensorboard_writer_warns_once_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    from torch.utils.tensorboard import SummaryWriter

    calls = []
    real = SummaryWriter.add_scalar

    def add_scalar(self, *a, **k):
        calls.append(1)
        if len(calls) > 3:
            raise OSError(28, "No space left on device")
        return real(self, *a, **k)

    monkeypatch.setattr(SummaryWriter, "add_scalar", add_scalar)
    run = iac.main(["--env", "simple_world", "--total-steps", "120", "--eval-every", "20", "--eval-episodes", "2",
                    "--batch-size", "8", "--hidden", "8", "--heads", "2", "--runs-dir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert err.count("TensorBoard's log in") == 1 and "No space left on device" in err
    with open(os.path.join(run, "eval.csv")) as f:
        assert [line.split(",")[0] for line in f][1:] == [str(s) for s in range(0, 121, 20)]


def test_a_figure_that_cannot_be_written_stops_with_one_line_and_leaves_no_temp_file(tmp_path, monkeypatch):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    plots.save(fig, str(tmp_path), "ok")  # the previous figure
    before = (tmp_path / "ok.png").read_bytes()

    def full(self, path, **k):
        open(path, "wb").write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plt.Figure, "savefig", full)
    fig, ax = plt.subplots()
    with pytest.raises(SystemExit) as e:
        plots.save(fig, str(tmp_path), "ok")
    assert str(e.value.code) == f"error: cannot write the figure {tmp_path}/ok.png: [Errno 28] No space left on device"
    assert sorted(os.listdir(tmp_path)) == ["ok.png"] and (tmp_path / "ok.png").read_bytes() == before


def test_a_gif_that_pillow_cannot_write_stops_with_one_line_and_keeps_the_previous_gif(tmp_path, monkeypatch):
    from PIL import Image

    frames = [np.full((8, 8, 3), k * 30, dtype=np.uint8) for k in range(3)]
    path = str(tmp_path / "eval.gif")
    plots.save_gif(frames, path, fps=10)
    before = open(path, "rb").read()

    def broken(self, fp, *a, **k):
        open(fp, "wb").write(b"GIF8")
        raise OSError("encoder error -2 when writing image file")

    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(SystemExit) as e:
        plots.save_gif(frames, path, fps=10)
    assert str(e.value.code).startswith(f"error: cannot write the GIF {path}: encoder error")
    assert os.listdir(tmp_path) == ["eval.gif"] and open(path, "rb").read() == before
