# Paths and helpers shared by all rule files.
from ctvlp.core.config import data_sources
from ctvlp.ingest.inputs import bind_paths, rate_config_dir
from ctvlp.models.window_encoder import PRETRAINED_FILE
from ctvlp.train.ablations import apply_overrides

RESULTS = config["results"]
LOGS = config["logs"]
DEMO = config["demo"]
DEMO_DONE = f"{DEMO['root']}/ground_truth/cohort.json" if DEMO["enabled"] else None
SOURCES = data_sources(config)
SHARDS = list(range(config["preprocess"]["shards"]))
# One conda environment and one Apptainer image per kind of rule: data (ingest, preprocess, text; CPU lock),
# gpu (window features, training, embedding; GPU lock), report (evaluation, tables, figures; CPU, no torch).
# The environments are generated from the locks (tools/lock_to_env.py, `make envs`); the images are built from
# containers/{kind}.def (`make container-data` ...). An image left null runs that kind without a container.
KINDS = ("data", "gpu", "report")
ENVS = {kind: f"../../envs/{kind}.yaml" for kind in KINDS}
CONTAINERS = {kind: config["software"]["container"][kind] for kind in KINDS}
# Apptainer sees the working directory only: bind every configured folder outside it (data roots, models,
# results, logs). Appended once to the apptainer-args of this run; the Slurm jobs inherit them.
for _path in bind_paths(config, Path.cwd()):
    if f"--bind {_path}" not in workflow.deployment_settings.apptainer_args:
        workflow.deployment_settings.apptainer_args += f" --bind {_path}"

DICOM_INDEX = f"{RESULTS}/ingest/dicom_index.json"  # the merge summary; the rows are in DICOM_INDEX_DIR
DICOM_INDEX_DIR = f"{RESULTS}/ingest/dicom_index"  # partitioned parquet: part=P/bucket=B/data.parquet
MANIFEST = f"{RESULTS}/manifest/manifest.parquet"
VOLUMES = f"{RESULTS}/manifest/volumes.parquet"
QC = f"{RESULTS}/qc/qc.parquet"
QC_SUMMARY = f"{RESULTS}/qc/summary.md"
CLAIMS = f"{RESULTS}/tables/claims.md"  # the paper's claims in miniature (rule claims)


def workflow_file(path):
    """A config path: absolute as given; relative to the working directory when it exists there (a deployment's
    own config/), else to the workflow's folder (the shipped config/)."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    return WORKFLOW_DIR / path


def data_ready():
    """Inputs that must exist before data is read: the demo cohort when the demo is on."""
    return [DEMO_DONE] if DEMO_DONE else []


def hospital_index():
    return [DICOM_INDEX] if "hospital" in SOURCES else []


def all_targets():
    text = [
        f"{RESULTS}/text/{name}"
        for name in ("labels.parquet", "prompts.parquet", "snippets.parquet", "mining_stats.md")
    ]
    runs = [f"{RESULTS}/runs/{run}/final.json" for run in RUNS]
    evaluation = [f"{RESULTS}/tables/{name}.md" for name in TABLE_NAMES] + [
        f"{RESULTS}/figures/{name}.png" for name in FIGURE_NAMES
    ]
    claims = [CLAIMS] if "hospital" in SOURCES and RUNS else []
    return data_ready() + [VOLUMES, QC, QC_SUMMARY] + text + RATE_OUTPUTS + runs + evaluation + claims


def run_files(pattern):
    """One path per ablation run (RUNS comes from train.smk)."""
    return [pattern.format(run=run) for run in RUNS]


def figure_caption(name):
    """The caption file of a figure: workflow/report/figures/<kind>.rst."""
    kind = next(
        k
        for k in ("per_label_auc", "recall_at_k", "training_curves", "localization_errors", "qualitative")
        if name.startswith(k)
    )
    return f"../report/figures/{kind}.rst"


# Window-encoder pretraining and the feature set each run reads (RUNS comes from train.smk).
PRETRAIN = bool((config.get("pretrain") or {}).get("enabled", False))
PRETRAINED = f"{RESULTS}/{PRETRAINED_FILE}"
# A run whose `pretrain.enabled` differs from the config's reads features of the other encoder.
OTHER_FEATURES = "features_random" if PRETRAIN else "features_pretrained"


def feature_set(run):
    """features (the configured encoder) or the other encoder's set, for one ablation run."""
    flag = bool(apply_overrides(config, RUNS[run])["pretrain"]["enabled"]) if run in RUNS else PRETRAIN
    if flag != PRETRAIN and not config["preprocess"]["keep_volumes"]:
        sys.exit(
            f"ctvlp: ablation run '{run}' sets pretrain.enabled: {flag}, which needs the other encoder's "
            "features from the volume cache, but preprocess.keep_volumes is false"
        )
    return "features" if flag == PRETRAIN else OTHER_FEATURES


def feature_shards(wc):
    return expand(f"{RESULTS}/{feature_set(wc.run)}/shard_{{shard}}.parquet", shard=SHARDS)


def feature_dir(wc):
    return f"{RESULTS}/{feature_set(wc.run)}/volumes"


def uses_pretrained(fset):
    return fset == "features_pretrained" or (fset == "features" and PRETRAIN)
