"""The one cache every study step goes through (`studylib.io.cached`)."""

import json

import pytest

from studylib.io import cached


class Builder:
    """Writes `out/result.txt`; counts its calls; can be told to die half-way (as a killed process)."""

    def __init__(self, out):
        self.out, self.calls, self.die = out, 0, False

    def __call__(self):
        self.calls += 1
        self.out.mkdir(exist_ok=True)
        (self.out / f"part-{self.calls}").write_text("partial")
        if self.die:
            raise KeyboardInterrupt
        (self.out / "result.txt").write_text("done")
        return {"calls": self.calls}


def test_same_settings_are_reused_and_changed_ones_rebuilt_from_a_clean_folder(tmp_path):
    out, stamp = tmp_path / "out", tmp_path / "out.json"
    build = Builder(out)
    assert cached(stamp, {"a": 1}, [out / "result.txt"], build, clear=out) == (False, {"calls": 1})
    assert cached(stamp, {"a": 1}, [out / "result.txt"], build, clear=out) == (True, {"calls": 1})
    assert cached(stamp, {"a": 2}, [out / "result.txt"], build, clear=out) == (False, {"calls": 2})
    assert sorted(p.name for p in out.iterdir()) == ["part-2", "result.txt"]  # the old build's files went
    (out / "result.txt").unlink()  # an output removed by hand: rebuilt
    assert cached(stamp, {"a": 2}, [out / "result.txt"], build, clear=out)[0] is False


def test_an_interrupted_build_is_never_taken_for_a_finished_one(tmp_path):
    out, stamp = tmp_path / "out", tmp_path / "out.json"
    build = Builder(out)
    build.die = True
    with pytest.raises(KeyboardInterrupt):
        cached(stamp, {"a": 1}, [out / "result.txt"], build, clear=out)
    assert not stamp.exists()
    build.die = False
    assert cached(stamp, {"a": 1}, [out / "result.txt"], build, clear=out)[0] is False
    assert not (out / "part-1").exists()  # not resumable: the half-done folder was cleared


def test_a_resumable_build_continues_its_interrupted_work_and_only_that(tmp_path):
    out, stamp = tmp_path / "out", tmp_path / "out.json"
    build = Builder(out)
    build.die = True
    with pytest.raises(KeyboardInterrupt):
        cached(stamp, {"a": 1}, [out / "result.txt"], build, clear=out, resumable=True)
    assert json.loads(stamp.read_text()) == {"settings": {"a": 1}, "finished": False}
    build.die = False
    assert cached(stamp, {"a": 1}, [out / "result.txt"], build, clear=out, resumable=True) == (False, {"calls": 2})
    assert (out / "part-1").exists()  # same settings: continued, not cleared
    assert cached(stamp, {"a": 1}, [out / "result.txt"], build, clear=out, resumable=True)[0] is True
    build.die = True  # other settings interrupted, then asked again: cleared, never continued
    with pytest.raises(KeyboardInterrupt):
        cached(stamp, {"a": 2}, [out / "result.txt"], build, clear=out, resumable=True)
    assert not (out / "part-1").exists()


def test_an_unreadable_stamp_means_rebuild(tmp_path):
    out, stamp = tmp_path / "out", tmp_path / "out.json"
    build = Builder(out)
    cached(stamp, {"a": 1}, [out / "result.txt"], build, clear=out)
    stamp.write_text("{truncated")
    assert cached(stamp, {"a": 1}, [out / "result.txt"], build, clear=out)[0] is False
