"""A missing or corrupt calibration file gives a one-line error naming the file."""

import gzip
import shutil

import pytest

from calibration import tables
from calibration.validate import report

FILES = sorted(p.name for p in tables.DATA_DIR.iterdir() if p.name.endswith((".csv", ".csv.gz")))


@pytest.fixture
def data_copy(tmp_path):
    target = tmp_path / "data"
    shutil.copytree(tables.DATA_DIR, target)
    return target


def _error(data_dir) -> str:
    with pytest.raises(tables.DataFileError) as info:
        report(n=50, seed=0, data_dir=data_dir)  # samples the census source, then reads every table
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", FILES)
def test_missing_file_is_named(data_copy, name):
    (data_copy / name).unlink()
    message = _error(data_copy)
    assert name in message and "missing" in message


@pytest.mark.parametrize("name", FILES)
def test_file_with_wrong_columns_is_named(data_copy, name):
    text = "alpha,beta\n1,2\n"
    if name.endswith(".gz"):
        (data_copy / name).write_bytes(gzip.compress(text.encode()))
    else:
        (data_copy / name).write_text(text)
    assert name in _error(data_copy)


def test_undecodable_gzip_is_named(data_copy):
    (data_copy / tables.EARNERS).write_bytes(b"\x1f\x8b\x08garbage" * 10)
    assert tables.EARNERS in _error(data_copy)


def test_non_numeric_wage_percentile_is_named(data_copy):
    path = data_copy / tables.OEWS_MAJOR
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("28.91", "abc")  # management, hourly p10
    path.write_text("\n".join(lines) + "\n")
    assert tables.OEWS_MAJOR in _error(data_copy)
