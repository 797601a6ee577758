"""bench/startup.py: its one-batch dataset and the timing of a launch's epoch lines."""

import os
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import startup  # noqa: E402

from tests.conftest import write_images  # noqa: E402


def test_one_batch_folder_holds_exactly_one_batch(tmp_path):
    write_images(tmp_path / "frames", 7)
    data_dir = startup.one_batch_folder(str(tmp_path / "frames"), 5, str(tmp_path / "work"))
    assert len(os.listdir(os.path.join(data_dir, "startup"))) == 5
    with pytest.raises(SystemExit, match="has 7 images; the start-up run needs 9"):
        startup.one_batch_folder(str(tmp_path / "frames"), 9, str(tmp_path / "other"))


def test_launch_times_are_taken_from_the_epoch_lines(tmp_path):
    # A stand-in main.py: 0.6 s of start-up, then an epoch line every 0.2 s.
    (tmp_path / "main.py").write_text(textwrap.dedent("""
        import sys, time
        assert "--train" in sys.argv and "--epoch" in sys.argv
        time.sleep(0.6)
        for epoch in range(1, 4):
            print(f"Epoch {epoch}/3: step {epoch}", flush=True)
            time.sleep(0.2)
    """))
    figures = startup.time_training(str(tmp_path), str(tmp_path), str(tmp_path / "run"), [])
    assert 0.6 <= figures["first_step_s"] < figures["exit_s"]
    assert 0.15 <= figures["step_s"] < 0.6
    assert 0.15 <= figures["exit_after_output_s"] < figures["exit_s"] - figures["first_step_s"]


def test_a_launch_can_import_from_a_folder_of_its_own_first(tmp_path):
    (tmp_path / "deps").mkdir()
    (tmp_path / "deps" / "marker_module.py").write_text("WHERE = 'the folder given'\n")
    (tmp_path / "main.py").write_text(textwrap.dedent("""
        try:
            import marker_module
        except ImportError:
            raise SystemExit("marker_module not importable")
        for epoch in range(1, 3):
            print(f"Epoch {epoch}/2: step {epoch}", flush=True)
    """))
    with pytest.raises(SystemExit, match="not importable"):
        startup.time_training(str(tmp_path), str(tmp_path), str(tmp_path / "run"), [])
    figures = startup.time_training(str(tmp_path), str(tmp_path), str(tmp_path / "run"), [],
                                    pythonpath=str(tmp_path / "deps"))
    assert figures["first_step_s"] > 0


def test_a_failed_launch_says_so_with_its_output(tmp_path):
    (tmp_path / "main.py").write_text("import sys\nprint('dcgan_tf: no such dataset')\nsys.exit(1)\n")
    with pytest.raises(SystemExit, match="(?s)exit 1.*no such dataset"):
        startup.time_training(str(tmp_path), str(tmp_path), str(tmp_path / "run"), [])
