from stream.runtime import local_state


def killed_run(tabledir):
    """A worker process that claimed the folder and was killed (no release)."""
    (tabledir / local_state.MARKER).write_text("4194305")  # above Linux's pid_max: not this process


def test_clean_stop_keeps_tables(tmp_path):
    (tmp_path / "user-state-0.db").mkdir()
    assert local_state.claim(tmp_path, wipe_if_unclean=True) is False
    local_state.release(tmp_path)
    assert local_state.claim(tmp_path, wipe_if_unclean=True) is False
    assert (tmp_path / "user-state-0.db").is_dir()


def test_unclean_stop_wipes_tables_when_asked(tmp_path):
    (tmp_path / "user-state-0.db").mkdir()
    (tmp_path / "user-state-0.db" / "CURRENT").write_text("x")
    (tmp_path / "stray-file").write_text("x")
    killed_run(tmp_path)
    assert local_state.claim(tmp_path, wipe_if_unclean=True) is True
    assert sorted(p.name for p in tmp_path.iterdir()) == [local_state.MARKER]


def test_unclean_stop_keeps_tables_at_least_once(tmp_path):
    (tmp_path / "user-state-0.db").mkdir()
    killed_run(tmp_path)
    assert local_state.claim(tmp_path, wipe_if_unclean=False) is True
    assert (tmp_path / "user-state-0.db").is_dir()


def test_a_second_claim_by_the_same_process_is_not_an_unclean_stop(tmp_path):
    (tmp_path / "user-state-0.db").mkdir()
    local_state.claim(tmp_path, wipe_if_unclean=True)
    assert local_state.claim(tmp_path, wipe_if_unclean=True) is False
    assert (tmp_path / "user-state-0.db").is_dir()
