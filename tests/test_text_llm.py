"""The LLM path against a local HTTP server of the test's own that speaks OpenAI chat completions."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from ctvlp.text.llm import (ChatClient, LLMLabeler, LLMSettings, Translator, load_glossary, load_question_set,
                            parse_answers)
from ctvlp.text.pipeline import label_reports, translate_reports


class FakeModel(BaseHTTPRequestHandler):
    """Answers like a model would, from the request alone: label questions get yes/no from keywords of the
    report, translations apply the glossary sent in the system prompt; "FAIL-ONCE" costs one 503 first,
    "GARBLED" reports get prose instead of JSON."""

    calls: list[dict] = []
    failed: set[str] = set()

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/chat/completions" and body["model"] == "test-model"
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        FakeModel.calls.append(body)
        if "FAIL-ONCE" in user and user not in FakeModel.failed:
            FakeModel.failed.add(user)
            self._send(503, {"error": "busy"})
            return
        if system.startswith("Translate"):
            terms = dict(line.split(" -> ") for line in system.splitlines() if " -> " in line)
            terms.update({"Kein": "No", "rechts": "on the right"})  # what the model knows beyond the glossary
            content = user
            for de, en in sorted(terms.items(), key=lambda t: -len(t[0])):
                content = content.replace(de, en)
        elif "GARBLED" in user:
            content = "I think the patient has an effusion."
        else:
            assert body["response_format"]["type"] == "json_schema"
            report = user.split("Questions (id: question):")[0].lower()
            ids = [line.split('"')[1] for line in user.splitlines() if line.startswith('- "')]
            keys = {"Pleural effusion": "pleural effusion", "Lung nodule": "nodule", "Cardiomegaly": "cardiomegaly"}
            answers = {i: ("uncertain" if "possible " + keys.get(i, "#") in report else
                           "yes" if keys.get(i, "#") in report and "no " + keys.get(i, "#") not in report else "no")
                       for i in ids}
            content = "```json\n" + json.dumps({"answers": answers}) + "\n```"
        self._send(200, {"id": "x", "object": "chat.completion", "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": content}}]})

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def server():
    FakeModel.calls, FakeModel.failed = [], set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeModel)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def _reports() -> pd.DataFrame:
    texts = [("V1", "de", "Rundherd rechts (Serie 3, Bild 45). Kein Pleuraerguss.", "Rundherd."),
             ("V2", "en", "Pleural effusion on the right. FAIL-ONCE", "Effusion."),
             ("V3", "en", "Possible nodule. No pleural effusion.", "Cardiomegaly."),
             ("V4", "en", "GARBLED report.", "")]
    return pd.DataFrame([{"volume_id": v, "dataset": "hospital", "split": "train", "accession_key": "", "language": lg,
                          "findings": f, "impression": i, "text": f + "\n" + i, "flags": ""} for v, lg, f, i in texts])


def test_translation_then_labels_then_cache_hits_on_rerun(server, tmp_path):
    settings = LLMSettings(base_url=server, model="test-model", cache_dir=str(tmp_path / "cache"), concurrency=3,
                           retries=2, backoff_s=0.01)
    for run in range(2):
        client = ChatClient(settings)
        translated = translate_reports(_reports(), Translator(client, load_glossary(None, "de", "en")))
        labeler = LLMLabeler(client, load_question_set(None))
        labels, qc = label_reports(translated, labeler)
        client.close()
        if run == 0:
            first_requests = client.requests
            assert client.cache_hits == 0 and first_requests == 2 + 4 + 1  # 2 translations, 4 reports, 1 retry
        else:
            assert client.requests == 0 and client.cache_hits == 2 + 4  # nothing asked twice
    assert len(FakeModel.calls) == first_requests
    v1 = translated.set_index("volume_id").loc["V1"]
    assert v1.language == "en" and "pulmonary nodule" in v1.findings and "(series 3, image 45)" in v1.findings
    assert "translated_de_en" in v1["flags"]
    by = labels.set_index("volume_id")
    assert by.loc["V1", "Lung nodule"] == 1 and by.loc["V1", "Pleural effusion"] == 0
    assert by.loc["V2", "Pleural effusion"] == 1
    assert by.loc["V3", "Lung nodule"] == -1 and by.loc["V3", "Cardiomegaly"] == 1
    assert (by.loc["V4", list(labeler.questions.questions)] == -1).all()
    assert [q["item"] for q in qc] == ["V4"] and "not the requested JSON" in qc[0]["reason"]
    assert set(labels.labeler) == {"llm"} and labels.labeler_version.iloc[0].endswith("test-model")


def test_unreachable_server_is_a_qc_row_not_a_crash(tmp_path):
    settings = LLMSettings(base_url="http://127.0.0.1:9/v1", model="test-model", cache_dir=str(tmp_path),
                           retries=1, backoff_s=0.01, timeout_s=2)
    client = ChatClient(settings)
    labels, qc = label_reports(_reports().iloc[:1], LLMLabeler(client, load_question_set(None)))
    assert len(qc) == 1 and "no answer after 2 tries" in qc[0]["reason"]
    assert (labels.drop(columns=["volume_id", "dataset", "labeler", "labeler_version"]) == -1).all(axis=None)


def test_answer_mapping_follows_the_paper():
    questions = {"A": "?", "B": "?", "C": "?"}
    assert parse_answers('{"answers": {"A": "yes", "B": "No", "C": "uncertain"}}', questions) == {"A": 1, "B": 0, "C": -1}
    assert parse_answers('{"A": "yes", "B": "maybe", "C": "uncertain"}', questions, 0) == {"A": 1, "B": 0, "C": 0}
    assert parse_answers('{"answers": {"A": "yes"}}', questions) is None
    assert parse_answers("prose", questions) is None


def test_shipped_question_set_covers_the_18_labels():
    from ctvlp.core.label_set import CTRATE_LABELS
    assert tuple(load_question_set(None).questions) == CTRATE_LABELS
