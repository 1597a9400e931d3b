"""What AWS Batch capacity costs: the instance families genobatch's compute environments use, and prices.

USD per vCPU-hour, Linux on-demand in us-east-1 (list prices of the 2xlarge sizes: c6i $0.34, m6i $0.384,
r6i $0.504 per hour for 8 vCPUs). Spot is typically 30-40% of on-demand for these families; it moves.
"""

from __future__ import annotations

INSTANCE_FAMILIES = ("c6i", "m6i", "r6i")  # x86_64, as the tool images are built
ON_DEMAND_PER_VCPU_HOUR = {"c6i": 0.0425, "m6i": 0.048, "r6i": 0.063}
SPOT_FRACTION = (0.30, 0.40)


def price_table() -> dict[str, tuple[float, float, float]]:
    """Family -> (on-demand, spot low, spot high) USD per vCPU-hour."""
    low, high = SPOT_FRACTION
    return {
        f: (ON_DEMAND_PER_VCPU_HOUR[f], ON_DEMAND_PER_VCPU_HOUR[f] * low, ON_DEMAND_PER_VCPU_HOUR[f] * high)
        for f in INSTANCE_FAMILIES
    }
