# Paths and helpers shared by all rule files.
RESULTS = config["results"]
LOGS = config["logs"]
DEMO = config["demo"]
DEMO_DONE = f"{DEMO['root']}/ground_truth/cohort.json" if DEMO["enabled"] else None
ENV = "../../envs/ctvlp.yaml"


def data_ready():
    """Inputs that must exist before data is read: the demo cohort when the demo is on."""
    return [DEMO_DONE] if DEMO_DONE else []


def all_targets():
    return data_ready()
