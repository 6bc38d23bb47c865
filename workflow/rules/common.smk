# Imports, paths, shared globals and input functions of every rule file, all defined here before any rule file
# uses them (the rule files hold rules only).
# Parsing imports no torch (tests/test_workflow_rerun.py checks it): only torch-free library modules here.
from ctvlp.core.config import ConfigError, data_sources
from ctvlp.core.salt import current_fingerprint, salt_changed, stored_check
from ctvlp.core.params import canonical, select
from ctvlp.core.provenance import software_state
from ctvlp.ingest.inputs import bind_paths, rate_config_dir
from ctvlp.text.stage import TEXT_KEYS, needs_llm
from ctvlp.text.stage import input_files as text_input_files
from ctvlp.train.ablations import apply_overrides, load_ablations, schedule_priority
from ctvlp.train.launch import check_runs, run_config


def workflow_file(path):
    """A config path: absolute as given; relative to the working directory when it exists there (a deployment's
    own config/), else to the workflow's folder (the shipped config/)."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    return WORKFLOW_DIR / path


RESULTS = config["results"]
LOGS = config["logs"]
DEMO = config["demo"]
DEMO_DONE = f"{DEMO['root']}/ground_truth/cohort.json" if DEMO["enabled"] else None
SOURCES = data_sources(config)
SHARDS = list(range(config["preprocess"]["shards"]))
# keep_volumes: false (paper preset, frozen encoder): the preprocessing job extracts the window features and only
# the held-out hospital volumes (qualitative figures) are cached; rule window_features then does not exist.
KEEP_VOLUMES = config["preprocess"]["keep_volumes"]
# One conda environment and one Apptainer image per kind of rule: data (ingest, preprocess, text; CPU lock),
# gpu (window features, training, embedding; GPU lock), report (evaluation, tables, figures; CPU, no torch).
# The environments are generated from the locks (tools/lock_to_env.py, `make envs`); the images are built from
# containers/{kind}.def (`make container-data` ...). An image left null runs that kind without a container.
KINDS = ("data", "gpu", "report")
ENVS = {kind: f"../../envs/{kind}.yaml" for kind in KINDS}
CONTAINERS = {kind: config["software"]["container"][kind] for kind in KINDS}
# Apptainer sees the working directory only: bind every configured folder outside it (data roots, models,
# results, logs) and the workflow's src/ (the Snakefile puts it first on PYTHONPATH). Appended once to the
# apptainer-args of this run; the Slurm jobs inherit them.
for _path in bind_paths(config, Path.cwd(), also=[WORKFLOW_DIR / "src"]):
    if f"--bind {_path}" not in workflow.deployment_settings.apptainer_args:
        workflow.deployment_settings.apptainer_args += f" --bind {_path}"

DICOM_INDEX = f"{RESULTS}/ingest/dicom_index.json"  # the merge summary; the rows are in DICOM_INDEX_DIR
DICOM_INDEX_DIR = f"{RESULTS}/ingest/dicom_index"  # partitioned parquet: part=P/bucket=B/data.parquet
MANIFEST = f"{RESULTS}/manifest/manifest.parquet"
VOLUMES = f"{RESULTS}/manifest/volumes.parquet"
QC = f"{RESULTS}/qc/qc.parquet"
QC_SUMMARY = f"{RESULTS}/qc/summary.md"
TEXT = f"{RESULTS}/text"
CLAIMS = f"{RESULTS}/tables/claims.md"  # the paper's claims in miniature (rule claims)
PROBE = f"{RESULTS}/tables/linear_probe.md"  # the window features' linear-probe ceiling (rule linear_probe, demo)

# ---- config as params --------------------------------------------------------------------------------------
# Every rule passes the config keys its script reads as params (only those keys, ctvlp.core.params.select;
# mappings with sorted keys), never through snakemake.config: Snakemake then reruns exactly the jobs whose keys
# changed, and the same config with its keys in another order reruns nothing. The privacy section is never a
# param (params are written to .snakemake/metadata): scripts read the salt with
# resolve_salt(snakemake.config["privacy"]) from the variable privacy.salt_env names (the Snakefile moves a salt
# given in the config there, so the pickled config holds none), and the rules that pseudonymize get SALT_ID instead, a keyed fingerprint of the salt (HMAC-SHA256 of a fixed
# text, 12 hex digits: no more than any pseudonym in the results reveals), so a new salt reruns them.
# (ctvlp.core.salt.fingerprint; the Snakefile has already stopped the run when no salt is set).
SALT_ID = current_fingerprint(config["privacy"])
# The index stores the fingerprint of the salt it was made with: a run with another salt says so before any job.
# With the params trigger (the default) the index and everything after it are redone with the new salt; a text
# stage that still meets the old index (--rerun-triggers without params, results copied without .snakemake)
# stops with the same words (ctvlp.text.stage.check_reports_joined).
SALT_CHANGED = salt_changed(stored_check(DICOM_INDEX), SALT_ID, DICOM_INDEX)
if SALT_CHANGED:
    print(
        f"ctvlp: privacy: {SALT_CHANGED}; the salt is a param of the index: it and every step after it are "
        "redone (with the params rerun trigger, the default)",
        file=sys.stderr,
    )

# What ctvlp.ingest.IngestSettings reads: series selection, geometry rules, splits and the shard count.
INGEST_KEYS = [
    *(
        f"ingest.{key}"
        for key in (
            "axial_tolerance_deg",
            "tilt_tolerance_deg",
            "gap_factor",
            "spacing_tolerance",
            "min_slices",
            "prefer_kernels",
            "prefer_thickness_mm",
            "allow_series_kinds",
        )
    ),
    "splits",
    "preprocess.shards",
]


def config_params(*keys, missing_ok=False):
    """The config keys (dotted) a rule's script reads, as one canonical param value."""
    return select(config, keys, missing_ok=missing_ok)


# ---- data ----------------------------------------------------------------------------------------------------
def data_ready():
    """Inputs that must exist before data is read: the demo cohort when the demo is on."""
    return [DEMO_DONE] if DEMO_DONE else []


def hospital_index():
    return [DICOM_INDEX] if "hospital" in SOURCES else []


# RATE question labels (the paper's disease labels) for the prompt loss: only when text.rate.config_dir is set.
RATE = config["text"].get("rate") or {}
RATE_DIR = rate_config_dir(config)
RATE_SOURCES = {name: entry["rate_labels"] for name, entry in SOURCES.items() if (entry or {}).get("rate_labels")}
RATE_OUTPUTS = (
    [f"{TEXT}/rate_labels.parquet", f"{TEXT}/rate_prompts.parquet", f"{TEXT}/label_groups.json"] if RATE_DIR else []
)
# what training reads of them (ctvlp.train.prompt_set, the groups rate_abdomen / rate_chest of the prompt loss)
RATE_TRAIN_INPUTS = RATE_OUTPUTS[:2]

# ---- training runs ---------------------------------------------------------------------------------------------
# One training run per row of the ablation table. Each row must be able to start (its overrides name config
# keys, its global batch splits over the configured GPUs, a row flipping pretrain.enabled finds the other
# encoder's volume cache): checked here, before any job, with a ConfigError naming the key and the row.
RUNS = load_ablations(workflow_file(config["train"]["ablations"]))
try:
    TRAIN_PLAN = check_runs(config, RUNS)
except ConfigError as err:
    raise ConfigError(f"ctvlp: {err}") from None  # printed as: ConfigError in file .../common.smk: ctvlp: ...
print(f"ctvlp: train: {TRAIN_PLAN.describe()}", file=sys.stderr)
# Rows with train.source: released are not trained: rule import_release writes their run folder from a model in
# RadFinder's release layout (train.release_dir: absolute, or relative to results for the workflow's own export).
RELEASED_RUNS = [run for run in RUNS if apply_overrides(config, RUNS[run])["train"]["source"] == "released"]
TRAINED_RUNS = [run for run in RUNS if run not in RELEASED_RUNS]


def release_folder(run):
    folder = apply_overrides(config, RUNS[run])["train"]["release_dir"]
    if not folder:
        raise ConfigError(f"ctvlp: ablation run '{run}' sets train.source: released but no train.release_dir")
    return Path(folder) if Path(folder).is_absolute() else Path(RESULTS) / folder


def release_files(wc):
    """The files import_release reads, config.json and the weights (one file, or the shard index)."""
    folder = release_folder(wc.run)
    if folder.is_relative_to(Path(RESULTS)) or (folder / "model.safetensors").exists():
        return [str(folder / "config.json"), str(folder / "model.safetensors")]
    return [str(folder / "config.json"), str(folder / "model.safetensors.index.json")]


# The imported pretrained weights (ctvlp import-weights): a re-import reruns features and training.
WEIGHTS = [f"{config['model']['weights_dir']}/manifest.json"] if config["model"].get("weights_dir") else []
# Window-encoder pretraining writes here (ctvlp.models.window_encoder.PRETRAINED_FILE under results/; written out
# so that parsing imports no torch, and tested to agree).
PRETRAIN = bool((config.get("pretrain") or {}).get("enabled", False))
PRETRAINED = f"{RESULTS}/pretrain/window_encoder.safetensors"
# A run whose `pretrain.enabled` differs from the config's reads features of the other encoder.
OTHER_FEATURES = "features_random" if PRETRAIN else "features_pretrained"


def run_files(pattern):
    """One path per ablation run."""
    return [pattern.format(run=run) for run in RUNS]


def feature_set(run):
    """features (the configured encoder) or the other encoder's set, for one ablation run (check_runs made sure
    the other set can be made)."""
    flag = bool(apply_overrides(config, RUNS[run])["pretrain"]["enabled"]) if run in RUNS else PRETRAIN
    return "features" if flag == PRETRAIN else OTHER_FEATURES


def feature_shards(wc):
    return expand(f"{RESULTS}/{feature_set(wc.run)}/shard_{{shard}}.parquet", shard=SHARDS)


def feature_dir(wc):
    return f"{RESULTS}/{feature_set(wc.run)}/volumes"


def uses_pretrained(fset):
    return fset == "features_pretrained" or (fset == "features" and PRETRAIN)


def train_config(wc):
    """The run's effective config (its row's overrides applied), only the keys training reads
    (ctvlp.train.launch.run_config): a changed key reruns the rows it changes, not the others."""
    return run_config(config, RUNS[wc.run])


# ---- evaluation ----------------------------------------------------------------------------------------------
EVAL = config["evaluate"]
REFERENCE = EVAL["reference_run"] if EVAL["reference_run"] in RUNS else next(iter(RUNS), "none")
EVAL_SETS = [name for name in ("hospital", "ct_rate", "rad_chestct") if name in SOURCES]
HAS_HOSPITAL = "hospital" in SOURCES
# paper_* tables: the paper's protocol (RadFinder's definitions), written whatever evaluate.protocol says
PAPER_TABLES = [
    "paper_results",
    "paper_retrieval",
    "paper_zero_shot",
    "paper_v2v",
    "paper_merlin",
    "paper_localization",
    "paper_comparison",  # every published number beside this run's (ctvlp.evaluate.comparison)
]


# The runs compared with the published numbers: the reference run and every run of released weights.
def is_released(run):
    return apply_overrides(config, RUNS[run])["train"].get("source") == "released"


COMPARISON_RUNS = [REFERENCE] + [run for run in RUNS if run != REFERENCE and is_released(run)]


def released_weights(wc):
    """The release files a run of released weights was imported from (their hashes go into its provenance)."""
    return release_files(wc) if is_released(wc.run) else []


TABLE_NAMES = (
    ["main_results", "ablations"]
    + (["localization"] if HAS_HOSPITAL else [])
    + [f"per_label_auc_{name}" for name in EVAL_SETS]
    + PAPER_TABLES
)
FIGURE_NAMES = (
    [f"per_label_auc_{name}" for name in EVAL_SETS]
    + [f"recall_at_k_{name}_t2i_scans" for name in EVAL_SETS if name != "rad_chestct"]
    + ["training_curves"]
    + (["localization_errors", "qualitative"] if HAS_HOSPITAL else [])
)


def figure_caption(name):
    """The caption file of a figure: workflow/report/figures/<kind>.rst."""
    kind = next(
        k
        for k in ("per_label_auc", "recall_at_k", "training_curves", "localization_errors", "qualitative")
        if name.startswith(k)
    )
    return f"../report/figures/{kind}.rst"


# ---- provenance ----------------------------------------------------------------------------------------------
# The workflow's commit and dirty flag (of the folder holding its library, also when the Snakefile is a copy),
# or the deployed tag: a param of rule provenance, so a new commit rewrites the runs' records (nothing else).
SOFTWARE = software_state((WORKFLOW_DIR / "src").resolve())


def rule_kinds():
    """{rule: kind of environment (data, gpu, report)} of every rule with a conda environment."""
    kinds = {}
    for r in workflow.rules:
        env = str(r.conda_env or "")
        if env and Path(env).stem in KINDS:  # ../../envs/<kind>.yaml
            kinds[r.name] = Path(env).stem
    return dict(sorted(kinds.items()))


def all_targets():
    text = [f"{TEXT}/{name}" for name in ("labels.parquet", "prompts.parquet", "snippets.parquet", "mining_stats.md")]
    runs = run_files(f"{RESULTS}/runs/{{run}}/final.json")
    evaluation = [f"{RESULTS}/tables/{name}.md" for name in TABLE_NAMES] + [
        f"{RESULTS}/figures/{name}.png" for name in FIGURE_NAMES
    ]
    claims = [CLAIMS] if HAS_HOSPITAL and RUNS else []
    claims += [PROBE] if DEMO["enabled"] and RUNS else []
    provenance = run_files(f"{RESULTS}/runs/{{run}}/provenance.json")
    return data_ready() + [VOLUMES, QC, QC_SUMMARY] + text + RATE_OUTPUTS + runs + evaluation + claims + provenance
