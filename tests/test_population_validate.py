"""The validation report runs as a module and covers every source table."""

import subprocess
import sys

from calibration import validate


def test_validate_module_prints_every_section():
    result = subprocess.run(
        [sys.executable, "-m", "calibration.validate", "--n", "20000", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    for heading in ("earner table", "OEWS May 2025", "Table 11 ", "Table 11b", "Table 3", "paper_gb2"):
        assert heading in result.stdout
    assert "target" in result.stdout and "sampled" in result.stdout


def test_report_rows_with_tolerances_pass_at_200k():
    result = validate.report(n=200_000, seed=5)
    checked = result[result["ok"] != ""]
    assert len(checked) >= 22 + 22 + 7 + 5 + 1 + 2
    assert (checked["ok"] == "yes").all(), checked[checked["ok"] != "yes"]
