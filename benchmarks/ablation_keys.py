"""The variants of an ablation, read off a paper config and a fast config (both trees' ablations).

Every key whose resolved value differs between the two configs is one of our choices; keys that only
act together are grouped (a pattern ``SECTION.*`` takes every differing key under ``SECTION``), keys
that cannot change the measured numbers are left out, and every other differing key is a variant
of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from retina_data.config import to_dict
from retina_data.run_identity import flatten_config


def differing_keys(paper: Any, fast: Any) -> dict[str, Any]:
    """Dotted key -> fast value, for every key whose resolved value differs between two loaded configs."""
    ours = flatten_config(to_dict(fast))
    return {key: ours[key] for key, value in flatten_config(to_dict(paper)).items() if ours[key] != value}


def _matches(key: str, pattern: str) -> bool:
    return key == pattern or (pattern.endswith(".*") and key.startswith(pattern[:-1]))


def grouped_improvements(
    differing: Mapping[str, Any], groups: Mapping[str, Iterable[str]], no_effect: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """Improvement name -> {dotted key: fast value}: the groups, then every other differing key alone
    (``no_effect`` keys left out)."""
    left_out = set(no_effect)
    remaining = {key: value for key, value in differing.items() if key not in left_out}
    chosen: dict[str, dict[str, Any]] = {}
    for name, patterns in groups.items():
        patterns = list(patterns)
        keys = [key for key in remaining if any(_matches(key, pattern) for pattern in patterns)]
        if keys:
            chosen[name] = {key: remaining.pop(key) for key in keys}
    chosen.update({f"{key} = {value}": {key: value} for key, value in remaining.items()})
    return chosen
