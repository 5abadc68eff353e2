"""Review sampling: the rules choose the parts worth a QA look and say why, the caps hold per hour and
per day, and a sampled part reaches the review queue with its reason — through a real station, its
model, its SQLite log and the review pages and API."""

from __future__ import annotations

from edge_inspect.config import CountCheck, PointCheck, QACheck, Recipe, ReviewSampling
from edge_inspect.inspection.checks import CheckOutcome
from edge_inspect.station.review_sampling import DAY_S, HOUR_S, ReviewSampler
from edge_inspect.verdict import Verdict

from ..support.stations import write_station
from ..support.web import RECIPES, USERS, run_web

RECIPE = Recipe(
    number=1,
    name="plate",
    checks=[
        PointCheck(name="scratches", kind="point", prompt="Point to any scratches.", max=0),
        CountCheck(name="screws", kind="count", prompt="Point to the screws.", expected=4),
        QACheck(name="label", kind="qa", question="Is the label present?", expect="yes"),
    ],
)


def outcomes(scratches: int = 0, screws: int = 4, margin: float = 0.9, uncertain: bool = False) -> list[CheckOutcome]:
    return [
        CheckOutcome("scratches", "point", "pass" if scratches == 0 else "fail", "", counted=scratches),
        CheckOutcome("screws", "count", "pass" if screws == 4 else "fail", "", counted=screws),
        CheckOutcome("label", "qa", "pass", "uncertain: answered yes" if uncertain else "", margin=margin),
    ]


def test_each_rule_says_why_it_chose_a_part():
    rules = ReviewSampling(low_margin=0.3, count_edge=1, every_nth_pass=4, per_hour=100, per_day=100)
    s = ReviewSampler(rules)
    assert s.choose(RECIPE, Verdict.PASS, outcomes(), 0.0) == ""
    assert s.choose(RECIPE, Verdict.FAIL, outcomes(screws=3), 1.0) == "count at the edge: screws 3"
    assert s.choose(RECIPE, Verdict.FAIL, outcomes(screws=1), 2.0) == ""  # 3 off: a plain FAIL, not an edge
    assert (
        s.choose(RECIPE, Verdict.FAIL, outcomes(scratches=1), 3.0) == ""
    )  # max 0: one scratch is a defect, not an edge
    assert s.choose(RECIPE, Verdict.PASS, outcomes(margin=0.12), 4.0) == "low margin: label 0.12"
    assert s.choose(RECIPE, Verdict.PASS, outcomes(margin=0.12, uncertain=True), 5.0) == "uncertain: label"
    assert s.choose(RECIPE, Verdict.PASS, outcomes(), 6.0) == "one of every 4 PASSes"  # the 4th PASS so far


def test_the_caps_hold_per_hour_and_per_day_and_count_what_they_left_out():
    s = ReviewSampler(ReviewSampling(per_hour=2, per_day=3))
    part = outcomes(uncertain=True)
    chosen = [s.choose(RECIPE, Verdict.PASS, part, t) for t in (0.0, 10.0, 20.0)]
    assert [bool(c) for c in chosen] == [True, True, False]
    assert s.choose(RECIPE, Verdict.PASS, part, HOUR_S + 1) != ""  # a new hour: one more, the day's third
    assert s.choose(RECIPE, Verdict.PASS, part, 2 * HOUR_S + 20) == ""  # the day's cap
    assert s.choose(RECIPE, Verdict.PASS, part, DAY_S + 11) != ""  # the first two have left the day
    assert s.status(DAY_S + 11) == {"last_hour": 1, "last_day": 2, "capped": 2}


def test_sampled_parts_reach_the_review_queue_with_their_reason(tmp_path, tiny_bundle):
    path = write_station(
        tmp_path,
        tiny_bundle,
        recipes=RECIPES,
        plc={"enabled": False},
        web={"enabled": True, "open_view": True, "users": USERS},
        review_sampling={"low_margin": 1.0, "per_hour": 3},  # every yes/no margin is under 1: the cap decides
        storage={"dir": str(tmp_path / "data"), "save_pass_every": 0},  # PASS images only when sampled
    )

    async def scenario(station, client):
        for i in range(5):
            await station.inspect(2, part_id=f"S{i}")
        return {
            "sampled": (await client.get("/api/inspections?sampled=1")).json(),
            "all": (await client.get("/api/inspections")).json(),
            "page": (await client.get("/review?sampled=1&disposition=none")).text,
            "bad": (await client.get("/api/inspections?sampled=yes")).status_code,
            "status": station.status()["review_sampling"],
        }

    out = run_web(path, scenario)
    rows, every = out["sampled"]["items"], out["all"]["items"]
    assert sorted(r["part_id"] for r in rows) == ["S0", "S1", "S2"]
    assert all(r["review_reason"].startswith("low margin: label_yes ") for r in rows)
    assert sorted(r["part_id"] for r in every if not r["review_reason"]) == ["S3", "S4"]
    assert "low margin: label_yes" in out["page"] and "S0" in out["page"] and "S4" not in out["page"]
    assert out["bad"] == 400
    assert out["status"] == {"last_hour": 3, "last_day": 3, "capped": 2}
    for r in every:  # a sampled part keeps its image, PASS or not; the others only when not PASS
        assert bool(r["image_path"]) == (r["part_id"] in ("S0", "S1", "S2") or r["verdict"] != "PASS")


def test_the_caps_count_what_the_log_holds_across_a_restart(tmp_path, tiny_bundle):
    import asyncio

    from ..support.stations import run_station

    path = write_station(
        tmp_path, tiny_bundle, recipes=RECIPES, plc={"enabled": False},
        review_sampling={"low_margin": 1.0, "per_hour": 3},  # every part qualifies: the cap decides
    )  # fmt: skip

    async def parts(station, n: int, prefix: str):
        return [bool((await station.inspect(2, part_id=f"{prefix}{i}"))[0].review_reason) for i in range(n)]

    first = asyncio.run(run_station(path, lambda station: parts(station, 2, "F")))
    second = asyncio.run(run_station(path, lambda station: parts(station, 3, "S")))
    assert first == [True, True] and second == [True, False, False]  # 3 in the hour, restart or not


def test_a_shadow_disagreement_is_chosen_afterwards_within_the_same_caps():
    s = ReviewSampler(ReviewSampling(per_hour=2, per_day=100))
    assert s.choose(RECIPE, Verdict.FAIL, outcomes(uncertain=True), 0.0) == "uncertain: label"
    assert s.choose_afterwards("shadow_disagreement", 1.0) is True
    assert s.choose_afterwards("shadow_disagreement", 2.0) is False  # the hour's 2 are taken
    assert s.status(2.0) == {"last_hour": 2, "last_day": 2, "capped": 1}
    assert s.choose_afterwards("shadow_disagreement", HOUR_S + 1.0) is True
    off = ReviewSampler(ReviewSampling(shadow_disagreement=False))
    assert off.choose_afterwards("shadow_disagreement", 0.0) is False and off.status(0.0)["capped"] == 0
