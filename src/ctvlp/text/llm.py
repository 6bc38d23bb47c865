"""The paper's way of labeling and translating reports: an LLM behind an OpenAI-compatible endpoint.

vLLM and SGLang serve the OpenAI chat-completions protocol (``POST {base_url}/chat/completions``), so one small
client covers a site's GPU node (docs/text.md: LLM labeling, starting vLLM on Slurm). The client is ``httpx2`` (the
httpx API, already in the lock through huggingface_hub). What it does around the requests is what a long labeling
run needs: every answer is cached on disk per (report hash, question-set or glossary hash, model), so a rerun or a
resumed run asks nothing twice; failed requests (connection errors, 429, 5xx) are retried with exponential backoff;
at most ``concurrency`` requests are in flight; a tqdm bar shows progress; a report whose answer does not parse as
the requested JSON gets labels -1 (masked from the prompt loss) and a QC row, never a crash.

Only text that ``ctvlp.text.deidentify`` has scrubbed is sent (the pipeline calls this after scrubbing).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx2
import yaml
from tqdm import tqdm

log = logging.getLogger(__name__)
ANSWERS = {"yes": 1, "no": 0, "uncertain": -1}
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()


@dataclass(frozen=True)
class QuestionSet:
    """A site's questions: id (a label name) -> question, plus the system prompt; ``digest`` keys the cache."""

    name: str
    version: str
    system: str
    questions: dict[str, str]
    digest: str


def default_question_set_file() -> str:
    return str(resources.files("ctvlp") / "resources" / "questions_ctrate18.yaml")


def default_glossary_file() -> str:
    return str(resources.files("ctvlp") / "resources" / "glossary_de_en.yaml")


def load_question_set(path: str | None = None) -> QuestionSet:
    path = path or default_question_set_file()
    raw = Path(path).read_bytes()
    spec = yaml.safe_load(raw)
    if not isinstance(spec, dict) or not spec.get("questions") or not spec.get("system"):
        raise ValueError(f"{path}: a question set needs 'system' and 'questions' (id: question)")
    return QuestionSet(str(spec.get("name", Path(path).stem)), str(spec.get("version", "1")), str(spec["system"]),
                       {str(k): str(v) for k, v in spec["questions"].items()}, sha(raw))


@dataclass(frozen=True)
class LLMSettings:
    base_url: str
    model: str
    cache_dir: str
    api_key_env: str | None = None
    concurrency: int = 4
    retries: int = 4
    timeout_s: float = 120.0
    backoff_s: float = 0.5

    @classmethod
    def from_config(cls, llm: dict, cache_dir: str) -> "LLMSettings":
        return cls(base_url=str(llm["base_url"]).rstrip("/"), model=str(llm["model"]),
                   cache_dir=str(llm.get("cache_dir") or cache_dir), api_key_env=llm.get("api_key_env"),
                   concurrency=int(llm.get("concurrency", 4)), retries=int(llm.get("retries", 4)),
                   timeout_s=float(llm.get("timeout_s", 120)))


def _on_site(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 link-local address may carry %<interface>
    return ip.is_loopback or ip.is_private or ip.is_link_local


def endpoint_problem(llm: dict) -> str | None:
    """Why the reports must not go to ``text.llm.base_url``, or None. Every (scrubbed) report body is sent there,
    so the endpoint must stay on the site: its host must resolve to loopback or a private address range (RFC 1918,
    IPv6 unique-local, link-local) only, unless ``text.llm.allow_remote`` is true. Checked with the config,
    before any job (a host that does not resolve is refused too: it cannot be shown to be local)."""
    from urllib.parse import urlsplit

    if llm.get("allow_remote"):
        return None
    url = str(llm.get("base_url", ""))
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as err:
        return f"text.llm.base_url '{url}' is not a URL ({err})"
    if parts.scheme not in ("http", "https") or not host:
        return f"text.llm.base_url '{url}' is not an http(s) URL with a host"
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError) as err:
        return (f"text.llm.base_url host '{host}' does not resolve ({err}), so it cannot be shown to be on this "
                "site; report text is only sent to loopback or private addresses unless text.llm.allow_remote: true")
    remote = sorted(a for a in addresses if not _on_site(a))
    if remote:
        return (f"text.llm.base_url host '{host}' resolves to {', '.join(remote)}, not a loopback or private "
                "address: every report body would leave the site (set text.llm.allow_remote: true only for an "
                "endpoint covered by the site's data agreements)")
    return None


class ChatClient:
    """Chat completions with retries, a disk cache and a concurrency limit; counts what it really asked."""

    def __init__(self, settings: LLMSettings):
        self.settings = settings
        key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx2.Client(base_url=settings.base_url, timeout=settings.timeout_s, headers=headers)
        self.requests = 0
        self.cache_hits = 0

    def close(self) -> None:
        self._http.close()

    def _cache_path(self, kind: str, key: str) -> Path:
        model = re.sub(r"[^\w.-]+", "_", self.settings.model)
        return Path(self.settings.cache_dir) / kind / model / key[:2] / f"{key}.json"

    def complete(self, kind: str, cache_key: str, messages: list[dict], schema: dict | None = None) -> str:
        """The assistant's content for ``messages``, from the cache when this exact request was answered."""
        path = self._cache_path(kind, cache_key)
        if path.exists():
            self.cache_hits += 1
            return json.loads(path.read_text(encoding="utf-8"))["content"]
        body = {"model": self.settings.model, "messages": messages, "temperature": 0}
        if schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": kind, "schema": schema}}
        content = self._post(body)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"model": self.settings.model, "content": content}), encoding="utf-8")
        tmp.replace(path)  # atomic: a killed run never leaves a half-written answer in the cache
        return content

    def _post(self, body: dict) -> str:
        last = ""
        for attempt in range(self.settings.retries + 1):
            if attempt:
                time.sleep(min(30.0, self.settings.backoff_s * 2 ** (attempt - 1)))
            try:
                self.requests += 1
                response = self._http.post("/chat/completions", json=body)
            except httpx2.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in RETRY_STATUS:
                last = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise RuntimeError(f"{self.settings.base_url}/chat/completions: HTTP {response.status_code}: "
                                   f"{response.text[:200]}")
            return str(response.json()["choices"][0]["message"]["content"])
        raise RuntimeError(f"{self.settings.base_url}/chat/completions: no answer after "
                           f"{self.settings.retries + 1} tries ({last})")

    def map(self, fn, items: list, desc: str) -> list:
        """``fn`` over ``items`` with at most ``concurrency`` in flight, in order, with a progress bar."""
        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            return list(tqdm(pool.map(fn, items), total=len(items), desc=desc, mininterval=5))


def parse_answers(content: str, questions: dict[str, str], uncertain_value: int = -1) -> dict[str, int] | None:
    """{"answers": {id: yes|no|uncertain}} -> labels; None when the content is not that JSON or lacks ids."""
    text = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", content.strip())
    try:
        answers = json.loads(text)
    except json.JSONDecodeError:
        match = re.search(r"\{.*\}", text, re.S)
        try:
            answers = json.loads(match.group()) if match else None
        except json.JSONDecodeError:
            answers = None
    if isinstance(answers, dict) and isinstance(answers.get("answers"), dict):
        answers = answers["answers"]
    if not isinstance(answers, dict) or not set(questions) <= set(answers):
        return None
    out = {}
    for qid in questions:
        value = str(answers[qid]).strip().lower()
        out[qid] = uncertain_value if value == "uncertain" else ANSWERS.get(value, 0)  # paper: not "yes" -> 0
    return out


class LLMLabeler:
    """The ``Labeler`` interface over an LLM: one request per report with every question of the set."""

    name = "llm"

    def __init__(self, client: ChatClient, questions: QuestionSet, uncertain_value: int = -1):
        self.client, self.questions, self.uncertain_value = client, questions, int(uncertain_value)
        self.version = f"{questions.name}-{questions.version}-{questions.digest[:8]}-{client.settings.model}"
        ids = list(questions.questions)
        self.schema = {"type": "object", "required": ["answers"], "properties": {"answers": {
            "type": "object", "required": ids,
            "properties": {q: {"enum": ["yes", "no", "uncertain"]} for q in ids}}}}

    def _messages(self, text: str) -> list[dict]:
        listed = "\n".join(f'- "{qid}": {q}' for qid, q in self.questions.questions.items())
        return [{"role": "system", "content": self.questions.system},
                {"role": "user", "content": f"Report:\n{text}\n\nQuestions (id: question):\n{listed}"}]

    def answer(self, text: str) -> tuple[dict[str, int], str]:
        """(labels, '' or the reason they are unknown)."""
        key = sha(f"{sha(text)}|{self.questions.digest}|{self.client.settings.model}")
        try:
            content = self.client.complete("labels", key, self._messages(text), self.schema)
        except RuntimeError as exc:
            return {q: -1 for q in self.questions.questions}, str(exc)
        parsed = parse_answers(content, self.questions.questions, self.uncertain_value)
        if parsed is None:
            return {q: -1 for q in self.questions.questions}, f"answer is not the requested JSON: {content[:80]!r}"
        return parsed, ""

    def __call__(self, text: str, lang: str = "en") -> dict[str, int]:
        return self.answer(text)[0]

    def label_batch(self, texts: list[str]) -> list[tuple[dict[str, int], str]]:
        return self.client.map(self.answer, texts, "LLM labels")


@dataclass(frozen=True)
class Glossary:
    source: str
    target: str
    terms: dict[str, str]
    digest: str


def load_glossary(path: str | None, source: str, target: str) -> Glossary:
    if not path:
        if (source, target) != ("de", "en"):
            return Glossary(source, target, {}, sha(f"{source}->{target}"))
        path = default_glossary_file()
    raw = Path(path).read_bytes()
    spec = yaml.safe_load(raw) or {}
    return Glossary(source, target, {str(k): str(v) for k, v in (spec.get("terms") or {}).items()}, sha(raw))


class Translator:
    """Report translation with the same client (and cache) before labeling and training."""

    NAMES = {"de": "German", "en": "English", "fr": "French", "it": "Italian", "es": "Spanish", "nl": "Dutch"}

    def __init__(self, client: ChatClient, glossary: Glossary):
        self.client, self.glossary = client, glossary

    def _messages(self, text: str) -> list[dict]:
        src = self.NAMES.get(self.glossary.source, self.glossary.source)
        dst = self.NAMES.get(self.glossary.target, self.glossary.target)
        terms = "\n".join(f"{a} -> {b}" for a, b in self.glossary.terms.items())
        system = (f"Translate the {src} radiology report into {dst}. Keep every number, every series and image "
                  f"reference, every placeholder in square brackets and the line breaks exactly as they are. "
                  f"Use these terms:\n{terms}\nReply with the translation only.")
        return [{"role": "system", "content": system}, {"role": "user", "content": text}]

    def translate(self, text: str) -> str:
        if not text.strip():
            return text
        key = sha(f"{sha(text)}|{self.glossary.digest}|{self.glossary.source}>{self.glossary.target}|"
                  f"{self.client.settings.model}")
        return self.client.complete("translate", key, self._messages(text)).strip()

    def translate_batch(self, texts: list[str]) -> list[str]:
        return self.client.map(self.translate, texts, "LLM translation")
