# ctvlp: disease-aware vision-language pretraining on 3D CT, end to end.
#   snakemake --cores all                                  # the demo (config/config.yaml)
#   snakemake --profile slurm --configfile config/paper.yaml   # the paper preset on a cluster
import os
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

# This file's folder (the repository), also when the workflow is used as a module (snakedeploy), where
# workflow.basedir is the deploying workflow's folder instead.
WORKFLOW_DIR = Path(str(workflow.current_basedir))
# The workflow's own library is importable without installing it: here, and in every rule script (Snakemake
# appends this process's search path to each script's, inside conda environments and containers alike).
sys.path.insert(0, str(WORKFLOW_DIR / "src"))
from ctvlp.core.config import ConfigError, validate_config
from ctvlp.core.logs import keep_unfinished_logs
from ctvlp.core.pythonpath import pythonpath_with_first
from ctvlp.ingest.inputs import check_inputs
from ctvlp.models.weights_dir import model_config_problems
from ctvlp.privacy.config_checks import config_privacy_problems

# ... and first: Snakemake appends that search path after the job's site-packages, so inside an image holding the
# ctvlp of an older checkout a rule would run that, not this checkout's code. Apptainer passes PYTHONPATH into
# the image (the folder is bound: common.smk); under --sdm conda Snakemake strips it, and the search path serves
# (those environments hold no ctvlp).
os.environ.update(PYTHONPATH=pythonpath_with_first(str(WORKFLOW_DIR / "src"), os.environ))
min_version("9.0")
# Nothing may be fetched from a model hub at run time: every model is a local path.
os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
# Same config and seed, same numbers: MKL and OpenMP must not pick thread counts from the machine's load.
os.environ.setdefault("MKL_DYNAMIC", "FALSE")
os.environ.setdefault("OMP_DYNAMIC", "FALSE")
# Results are for the lab: whatever the user's umask, outputs stay readable (and folders enterable) by the
# group. Slurm jobs run with the submitting process's umask. Group write is left to the user (umask 002).
os.umask(os.umask(0) & ~0o050)


configfile: WORKFLOW_DIR / "config" / "config.yaml"


report: "workflow/report/workflow.rst"


SCHEMA = WORKFLOW_DIR / "workflow" / "schemas" / "config.schema.yaml"
# A config that cannot run stops here, before any job, with one line naming the key (the checks raise ConfigError;
# re-raised without the library's frames, Snakemake prints "ConfigError in file .../Snakefile, line N:" and it).
try:
    validate_config(config, SCHEMA)  # one line naming the key
    check_inputs(config)  # data roots exist and are readable
    for problem in model_config_problems(config):  # head dims fit RoPE; model.weights_dir fits the dims
        raise ConfigError(problem)
    for problem in config_privacy_problems(config):  # a salt is set; report text goes to no remote LLM endpoint
        raise ConfigError(problem)
except ConfigError as err:
    raise ConfigError(f"ctvlp: {err}") from None
validate(config, str(SCHEMA))  # fills in the schema's defaults
# The salt reaches no file Snakemake writes (params and .snakemake/metadata, the config pickled into
# .snakemake/scripts/tmp*.py, which a killed job leaves behind, the report): a salt given in the config (the
# demo's) moves into the environment variable privacy.salt_env, which every job inherits (local, Slurm, Apptainer)
# and ctvlp.core.ids.resolve_salt reads.
if config["privacy"]["salt"]:
    os.environ[config["privacy"]["salt_env"]] = config["privacy"]["salt"]
    config["privacy"]["salt"] = ""


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/text.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/provenance.smk"


# The log of a job killed (or failed) in an earlier run is kept beside its rerun's as <name>.attempt-<n>.log:
# Snakemake deletes a job's log before running it again (run start only; not in dry runs nor in job processes).
onstart:
    keep_unfinished_logs(LOGS)


# Seconds-long bookkeeping on the submitting node instead of one Slurm job each (the slurm profile also groups
# the evaluation of all runs into one job).
localrules:
    all,
    qc_summary,
    tables,
    figures,


rule all:
    default_target: True
    input:
        all_targets(),
