"""The validation report runs as a module, covers every source table and fails loudly."""

import subprocess
import sys

import pytest

from calibration import validate


@pytest.mark.slow  # a process
def test_validate_module_prints_every_section_and_passes():
    result = subprocess.run(
        [sys.executable, "-m", "calibration.validate"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:]
    headings = ("OEWS May 2025", "Table 11 ", "Table 11b", "Table 3", "Table 39", "hourly wage", "paper_gb2")
    assert all(heading in result.stdout for heading in headings)
    assert "target" in result.stdout and "sampled" in result.stdout and "NO" not in result.stdout


def test_report_rows_with_tolerances_pass_at_200k():
    result = validate.report(n=200_000, seed=5)
    checked = result[result["ok"] != ""]
    # groups and the 30 largest occupations (shares), % women, 5 + 3 x 30 wage percentiles,
    # the wage ratio, age bands overall, by group (2 x 22) and by sex (2 x 7), paper_gb2
    assert len(checked) == 22 + 30 + 30 + 5 + 90 + 1 + 7 + 44 + 14 + 2
    assert (checked["ok"] == "yes").all(), checked[checked["ok"] != "yes"]


def test_exit_status_is_1_when_a_check_fails(capsys):
    assert validate.main(["--n", "300", "--seed", "1"]) == 1  # too few workers to meet the tolerances
    assert "NO" in capsys.readouterr().out
