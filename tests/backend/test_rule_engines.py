"""Every rule test case under both engines: Prometheus (promtool) and vmalert (vmalert-tool).

``alerts/tests/*.yaml`` are promtool test files. promtool runs them as they are: alerts,
labels and annotation texts exactly. vmalert-tool runs them with ``--disableAlertgroupLabel``
(so alerts carry the same labels as under Prometheus) and compares the decisions: the same
alerts must fire with the same labels at every evaluation time, and every annotation that
does not print ``$value`` must read the same. Annotations that print ``$value`` are left out
of the vmalert run only, because the engines compute some numbers differently by design
(MetricsQL's ``increase()`` does not extrapolate and counts from the sample before the
window; Prometheus 2.x ranges include the sample on their left edge). New alerts and new test
files are picked up without changes here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_jobtrack.generators import rules
from tests.backends import REPO_ROOT, promtool, vmalert_tool

ALERTS_DIR = REPO_ROOT / "alerts"
TEST_FILES = sorted((ALERTS_DIR / "tests").glob("*.yaml"))
ENGINES = ("prometheus", "vmalert")
VALUE = re.compile(r"\$value\b")


def value_annotations(groups: dict[str, Any]) -> set[str]:
    """Annotation names whose template prints ``$value`` in any alert."""
    return {
        name
        for group in groups["groups"]
        for rule in group["rules"]
        for name, text in rule.get("annotations", {}).items()
        if VALUE.search(text)
    }


def decision_suite(test_file: Path, out_dir: Path) -> Path:
    """``test_file`` and its rule file, copied to ``out_dir`` without the annotations that
    print ``$value``: what vmalert must agree on with Prometheus."""
    suite = yaml.safe_load(test_file.read_text())
    rule_paths = [(test_file.parent / rel).resolve() for rel in suite["rule_files"]]
    copies = []
    for i, path in enumerate(rule_paths):
        groups = yaml.safe_load(path.read_text())
        drop = value_annotations(groups)
        for group in groups["groups"]:
            for rule in group["rules"]:
                for name in drop & set(rule.get("annotations", {})):
                    del rule["annotations"][name]
        copy = out_dir / f"rules-{i}-{path.name}"
        copy.write_text(yaml.safe_dump(groups, sort_keys=False))
        copies.append((copy, drop))
    dropped = set().union(*(drop for _, drop in copies))
    suite["rule_files"] = [str(copy) for copy, _ in copies]
    for case in suite["tests"]:
        for check in case.get("alert_rule_test", []):
            for alert in check.get("exp_alerts") or []:
                notes = alert.get("exp_annotations", {})
                alert["exp_annotations"] = {k: v for k, v in notes.items() if k not in dropped}
    out = out_dir / test_file.name
    out.write_text(yaml.safe_dump(suite, sort_keys=False))
    return out


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.stem.removesuffix(".test"))
def test_rule_cases(engine: str, test_file: Path, tmp_path: Path) -> None:
    if engine == "prometheus":
        result = promtool("test", "rules", test_file, timeout=300)
    else:
        result = vmalert_tool(decision_suite(test_file, tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{engine}: {test_file.name} failed\n{output[-6000:]}"
    if engine == "vmalert":
        assert "SUCCESS" in output and "FAILED" not in output, output[-3000:]


def test_decision_suite_keeps_every_decision(tmp_path: Path) -> None:
    """The vmalert copy drops only ``$value`` annotations: alerts, labels, times all stay."""
    shipped = yaml.safe_load((ALERTS_DIR / rules.RULES_FILE).read_text())
    dropped = value_annotations(shipped)
    assert dropped == {"summary", "description"}  # runbook_url, dashboard_url stay compared
    for test_file in TEST_FILES:
        original = yaml.safe_load(test_file.read_text())
        copy = yaml.safe_load(decision_suite(test_file, tmp_path).read_text())
        assert len(copy["tests"]) == len(original["tests"])
        for case, case_copy in zip(original["tests"], copy["tests"], strict=True):
            assert case_copy["input_series"] == case["input_series"]
            checks = case.get("alert_rule_test", [])
            checks_copy = case_copy.get("alert_rule_test", [])
            assert [(c["eval_time"], c["alertname"]) for c in checks] == [
                (c["eval_time"], c["alertname"]) for c in checks_copy
            ]
            for check, check_copy in zip(checks, checks_copy, strict=True):
                expected = check.get("exp_alerts") or []
                expected_copy = check_copy.get("exp_alerts") or []
                assert [a["exp_labels"] for a in expected] == [
                    a["exp_labels"] for a in expected_copy
                ]
                for alert in expected_copy:
                    assert set(alert["exp_annotations"]) == {"runbook_url", "dashboard_url"}
        (rule_copy,) = copy["rule_files"]
        assert "$value" not in Path(rule_copy).read_text()


def test_vmalert_tool_fails_on_a_wrong_decision(tmp_path: Path) -> None:
    """The vmalert run can fail: a case expecting the wrong alert is reported as failed."""
    test_file = ALERTS_DIR / "tests" / "run_failures.test.yaml"
    suite = yaml.safe_load(decision_suite(test_file, tmp_path).read_text())
    check = next(c for c in suite["tests"][0]["alert_rule_test"] if c.get("exp_alerts"))
    check["exp_alerts"][0]["exp_labels"]["tenant"] = "someone-else"
    wrong = tmp_path / "wrong.test.yaml"
    wrong.write_text(yaml.safe_dump(suite, sort_keys=False))
    result = vmalert_tool(wrong)
    assert result.returncode != 0
    assert "someone-else" in result.stdout + result.stderr
