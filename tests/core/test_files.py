"""Writing outputs: errors that name the folder and say whether a retry can help; atomic JSON."""
import errno
import hashlib
import json
import os

import pytest

from core.errors import PublishError
from core.files import output_guard, read_json, sha256_file, write_json_atomic


def test_a_full_disk_is_not_retryable_and_an_io_error_is(tmp_path):
    with pytest.raises(PublishError) as full:
        with output_guard(tmp_path / "reports", published=tmp_path / "reports" / "2024-03"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "reports" / "x.html"))
    msg = str(full.value)
    assert not full.value.retryable
    assert msg.startswith(f"cannot write outputs to {tmp_path / 'reports'}: {os.strerror(errno.ENOSPC)}")
    assert "x.html" in msg and "untouched" in msg and "2024-03" in msg
    with pytest.raises(PublishError) as io_error:
        with output_guard(tmp_path):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
    assert io_error.value.retryable


def test_a_real_permission_error_is_caught_by_the_guard(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder")  # the fault tests cover root with a mount
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PublishError, match="Permission denied") as e:
            with output_guard(folder):
                write_json_atomic(folder / "a.json", {"a": 1})
        assert not e.value.retryable
    finally:
        folder.chmod(0o755)


def test_json_is_written_whole_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "run.json"
    write_json_atomic(target, {"period": "2024-03", "n": 1})
    write_json_atomic(target, {"period": "2024-04", "n": 2})
    assert read_json(target) == {"period": "2024-04", "n": 2}
    assert [p.name for p in target.parent.iterdir()] == ["run.json"]
    assert json.loads(target.read_text()) == {"period": "2024-04", "n": 2}


def test_sha256_of_a_file_larger_than_one_read(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
