"""tools/scale.py end to end, small: two consortia seeded with different numbers of accounts,
the same transfers and statement pages against both, their figures and ratios reported."""
from __future__ import annotations

import json

import pytest

from tools import scale

pytestmark = pytest.mark.integration


def test_the_scale_benchmark_compares_two_seeded_ledgers(amqp_url, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("AMQP_URL", amqp_url)
    out = tmp_path / "scale.json"
    code = scale.main(["--accounts", "100,3000", "--clients", "2", "--seconds", "2", "--rounds", "2",
                       "--pages", "3", "--page-seconds", "0.5", "--max-ratio", "1000", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    figures = json.loads(out.read_text())["figures"]
    for n in ("100", "3000"):
        f = figures[n]
        assert len(f["transfer_p50"]) == len(f["page_p95"]) == 2
        assert set(f["outcomes"]) == {"committed"} and f["outcomes"]["committed"] > 0
    assert "ratio transfer_p50" in printed and "worst ratio" in printed
    # a limit the figures cannot meet fails the run
    figures = {int(n): f for n, f in figures.items()}
    assert scale.report(figures, [100, 3000], type("A", (), {"rounds": 2, "max_ratio": 0.0, "json": None})()) == 1
    assert "cpu_ms" in json.loads(out.read_text())["ratios"]["3000"]
