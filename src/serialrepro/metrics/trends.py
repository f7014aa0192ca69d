"""Verdicts on FID against the number of sampling steps (the paper's Figure 4 claim).

The Figure 4 command and the experiment reports judge the same curves with the same rule,
so the rule lives here, below both.
"""

from __future__ import annotations

import math

import pandas as pd

#: |Spearman ρ(steps, FID)| above this counts as a trend (below: "no clear trend")
TREND_RHO = 0.3
#: a rising trend shows the paper's effect only if FID at the fewest steps is at least this
#: multiple of FID at the most steps (a smaller rise is within the sampling noise of FID
#: from a few hundred samples)
TREND_RATIO = 1.25
CURVE_KEYS = ("dataset", "family", "sampler")


def fid_trends(table: pd.DataFrame) -> list[dict]:
    """Per curve (data set, family, sampler) of a Figure 4 table: Spearman ρ between the
    number of sampling steps and FID, the FIDs at the most and the fewest steps, and a
    verdict on the paper's claim (fewer steps, worse FID: ρ < −``TREND_RHO`` and FID at the
    fewest steps ≥ ``TREND_RATIO`` × FID at the most).

    ``agrees`` is True for that trend, False for the opposite trend or none, None for a
    rise too small to count (``weak``) or fewer than three strides (too few to judge).
    Columns missing from ``table`` (a table without ``dataset``, say) make one curve of all
    its rows.
    """
    keys = [k for k in CURVE_KEYS if k in table.columns]
    groups = table.groupby(keys, sort=True) if keys else [((), table)]
    out = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        g = g.dropna(subset=["steps", "fid"]).sort_values("steps")
        curve = "/".join(str(k) for k in key) or "all"
        row = {"curve": curve, "n": len(g), "rho": math.nan, "agrees": None,
               "verdict": f"{len(g)} strides, too few to judge a trend"}
        if len(g):
            many, few = g.iloc[-1], g.iloc[0]
            row.update(fid_many=float(many["fid"]), steps_many=int(many["steps"]),
                       fid_few=float(few["fid"]), steps_few=int(few["steps"]))
        if len(g) >= 3:
            rho = float(g["steps"].rank().corr(g["fid"].rank()))
            row["rho"] = rho
            rise = row["fid_few"] / row["fid_many"] if row["fid_many"] > 0 else math.inf
            if rho < -TREND_RHO and rise >= TREND_RATIO:
                row["agrees"], row["verdict"] = True, "FID rises as steps fall"
            elif rho < -TREND_RHO:
                row["weak"] = True
                row["verdict"] = (f"FID rises only {rise - 1:.0%} as steps fall (under the "
                                  f"{TREND_RATIO - 1:.0%} that would show the paper's effect)")
            elif rho > TREND_RHO:
                row["agrees"], row["verdict"] = False, "FID falls as steps fall"
            else:
                row["agrees"] = False
                row["verdict"] = "no clear trend of FID with the number of steps"
        out.append(row)
    return out


def fid_trend_sentence(t: dict) -> str:
    """'<verdict> (Spearman ρ(steps, FID) = −0.93; FID 2.1 at 1000 steps, 52 at 50)'."""
    if "fid_many" not in t:
        return t["verdict"]
    rho = "" if math.isnan(t["rho"]) else f"Spearman ρ(steps, FID) = {t['rho']:+.2f}; "
    return (f"{t['verdict']} ({rho}FID {t['fid_many']:.3g} at {t['steps_many']} steps, "
            f"{t['fid_few']:.3g} at {t['steps_few']})")
