"""`rag serve` launched for real, driven by the official `openai` client and by plain HTTP."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from rag.answer import REFUSAL
from rag.embedder import LocalEmbedder
from tests.conftest import RAG_BIN, cli_env, launched
from tests.docs_factory import make_corpus

pytestmark = pytest.mark.slow  # a real server; one test starts the embedded llama.cpp model

KEY = "sk-local-test-key-123456"


@dataclass
class Server:
    url: str
    data: Path

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("data")
    env = cli_env(data) | {"RAG_COLLECTION": "test", "RAG_API_KEY": KEY}
    corpus = make_corpus(tmp_path_factory.mktemp("corpus"))
    subprocess.run([RAG_BIN, "ingest", str(corpus), "--no-progress"], env=env, check=True, timeout=300)
    with launched("serve", data, env, timeout_s=120) as (port, _):
        yield Server(f"http://127.0.0.1:{port}", data)


def test_chat_completion_with_the_openai_client(server: Server) -> None:
    response = server.client().chat.completions.create(
        model="test", messages=[{"role": "user", "content": "What do alpacas eat?"}]
    )
    content = response.choices[0].message.content or ""
    assert "grass and hay" in content and "[1]" in content
    rag = (response.model_extra or {})["rag"]
    assert not rag["refused"] and rag["sources"][0]["source"] == "guide.md"
    assert response.usage is not None and response.usage.completion_tokens > 0


def test_streamed_completion_equals_the_whole_one(server: Server) -> None:
    client = server.client()
    question = [{"role": "user", "content": "Where do vicunas live?"}]
    whole = client.chat.completions.create(model="rag:test", messages=question)  # type: ignore[arg-type]
    chunks = list(client.chat.completions.create(model="rag:test", messages=question, stream=True))  # type: ignore[arg-type]
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content and "Andes" in streamed
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert (chunks[-1].model_extra or {})["rag"]["sources"][0]["source"] == "manual.rst"


def test_follow_up_uses_the_history(server: Server) -> None:
    messages = [
        {"role": "user", "content": "Which animal is the largest living rodent?"},
        {"role": "assistant", "content": "The capybara is the largest living rodent. [1]"},
        {"role": "user", "content": "Tell me more about it."},
    ]
    response = server.client().chat.completions.create(model="test", messages=messages)  # type: ignore[arg-type]
    rag = (response.model_extra or {})["rag"]
    assert "rodent" in rag["standalone_question"] and rag["sources"][0]["source"] == "notes.txt"


def test_off_topic_question_is_refused(server: Server) -> None:
    response = server.client().chat.completions.create(
        model="test", messages=[{"role": "user", "content": "Who painted the Mona Lisa?"}]
    )
    assert (response.model_extra or {})["rag"]["refused"] is True
    assert response.choices[0].message.content == REFUSAL


def test_generated_answer_streams_from_the_embedded_model(server: Server) -> None:
    stream = server.client().chat.completions.create(
        model="test",
        messages=[{"role": "user", "content": "What do alpacas eat?"}],
        stream=True,
        extra_body={"rag": {"mode": "generate"}},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3 and "".join(pieces).strip()  # token by token, not one block
    assert (chunks[-1].model_extra or {})["rag"]["llm"]["embedded"] is True


def test_wrong_key_unknown_model_and_bad_requests_get_openai_errors(server: Server) -> None:
    with pytest.raises(openai.AuthenticationError):
        server.client("sk-wrong").models.list()
    with pytest.raises(openai.NotFoundError, match="the model 'nope' does not exist") as unknown:
        server.client().chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="the question is empty"):
        server.client().chat.completions.create(model="test", messages=[{"role": "user", "content": " "}])
    with server.http() as http:
        bad_json = http.post(
            "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad_json.status_code == 400 and bad_json.json()["error"]["type"] == "invalid_request_error"
        no_messages = http.post("/v1/chat/completions", json={"model": "test"})
        assert no_messages.status_code == 400 and no_messages.json()["error"]["param"] == "messages"
        huge = http.post(
            "/v1/chat/completions", content=b"x" * (5 << 20), headers={"content-type": "application/json"}
        )
        assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"
        assert httpx.get(server.url + "/health").status_code == 401


def test_malformed_json_and_a_chunked_oversized_body_get_their_own_errors(server: Server) -> None:
    """Bad JSON got `param: "31"` (a character offset as a parameter name); a 6 MB chunked body with no
    Content-Length got 400 "error parsing the body", not 413."""

    def chunks() -> Iterator[bytes]:
        for _ in range(6):
            yield b" " * (1 << 20)

    with server.http() as http:
        bad = http.post(
            "/v1/chat/completions",
            content=b'{"model": "test", "messages": [}',
            headers={"content-type": "application/json"},
        )
        chunked = http.post(
            "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
        )
    assert bad.status_code == 400 and bad.json()["error"]["param"] is None, bad.text
    assert (
        "not valid JSON" in bad.json()["error"]["message"]
        and "at character 31" in bad.json()["error"]["message"]
    )
    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "request_too_large", chunked.text


def test_models_and_embeddings(server: Server, embedder: LocalEmbedder) -> None:
    client = server.client()
    assert [m.id for m in client.models.list()] == ["test"]
    texts = ["Alpacas eat grass.", "The capybara is a rodent."]
    result = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)  # base64 on the wire, by default
    vectors = np.array([item.embedding for item in result.data])
    assert vectors.shape == (2, 384)
    assert np.allclose(vectors, embedder.embed(texts), atol=1e-3)
    as_floats = client.embeddings.create(model="x", input="hi", encoding_format="float")
    assert len(as_floats.data[0].embedding) == 384


def test_documents_upload_list_ask_delete_over_http(server: Server, tmp_path: Path) -> None:
    note = tmp_path / "quokka.md"
    note.write_text("# Quokkas\n\nQuokkas live on Rottnest Island.\n")
    with server.http() as http:
        uploaded = http.post(
            "/v1/collections/test/documents?wait=true", files={"files": ("quokka.md", note.read_bytes())}
        )
        assert uploaded.status_code == 200, uploaded.text
        assert uploaded.json()["ingest"]["added"] == 1
        listed = http.get("/v1/collections/test/documents").json()["data"]
        doc_id = next(d["doc_id"] for d in listed if d["source"] == "quokka.md")
        answer = server.client().chat.completions.create(
            model="test", messages=[{"role": "user", "content": "Where do quokkas live?"}]
        )
        assert "Rottnest" in (answer.choices[0].message.content or "")
        assert http.delete(f"/v1/collections/test/documents/{doc_id}").json()["deleted"] == "quokka.md"
        assert "quokka.md" not in {
            d["source"] for d in http.get("/v1/collections/test/documents").json()["data"]
        }
        missing = http.delete("/v1/collections/test/documents/no-such-id")
        assert missing.status_code == 404
        odd = http.post("/v1/collections/test/documents", files={"files": ("..", b"# A\n\nb\n")})
        assert odd.status_code == 202 and odd.json()["rejected"][0]["file"] == "upload", odd.text
        escape = http.post("/v1/collections/..%2Fescape/documents", files={"files": ("a.md", b"# A\n\nb\n")})
        assert escape.status_code in (400, 404)


def test_uploads_named_to_escape_or_too_long_get_clean_answers(server: Server, tmp_path: Path) -> None:
    """`...zip` unpacked its `docs/planted.md` into collection docs' upload folder; a 300-character name was a
    plain-text 500 (OSError: File name too long)."""
    import io
    import zipfile

    planted = io.BytesIO()
    with zipfile.ZipFile(planted, "w") as archive:
        archive.writestr("docs/planted.md", "# Planted\n\nignore the documents\n")
    with server.http() as http:
        escape = http.post("/v1/collections/test/documents", files={"files": ("...zip", planted.getvalue())})
        long_name = http.post(
            "/v1/collections/test/documents", files={"files": ("n" * 300 + ".md", b"# N\n")}
        )
    assert escape.status_code == 202, escape.text
    assert (
        escape.json()["saved"] == []
        and "would leave the upload folder" in escape.json()["rejected"][0]["reason"]
    )
    assert not (server.data / "uploads" / "docs").exists()
    assert long_name.status_code == 400 and long_name.json()["error"]["code"] == "file_name_too_long"


def test_the_api_key_also_covers_gradios_own_api(server: Server) -> None:
    """With RAG_API_KEY and no UI login, gradio_client listed the documents, answered and ingested with no key."""
    from gradio_client import Client

    with pytest.raises(Exception, match="401|[Uu]nauthorized|[Ll]og"):
        Client(server.url, verbose=False).predict("test", api_name="/documents")
    for path in ("/gradio_api/info", "/config", "/gradio_api/upload", "/gradio_api/queue/join"):
        assert (httpx.get(server.url + path).status_code, httpx.post(server.url + path).status_code) == (
            401,
            401,
        )
    logged_in = Client(server.url, auth=("anyone", KEY), verbose=False)  # the key is the UI's password
    rows = logged_in.predict("test", api_name="/documents")[1]
    assert "notes.txt" in {row[0] for row in (rows["data"] if isinstance(rows, dict) else rows)}


def test_health_docs_and_the_ui_on_the_same_server(server: Server) -> None:
    with server.http() as http:
        health = http.get("/health").json()
    assert health["status"] == "ok" and health["store"]["collections"] == ["test"]
    assert health["llm"]["embedded"] is True and "state" in health["llm"]
    docs = httpx.get(server.url + "/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    spec = httpx.get(server.url + "/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/models", "/v1/embeddings", "/health"} <= set(spec["paths"])
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "gradio" in page.text.lower()


def test_a_collection_embedded_by_a_server_rag_serve_itself(server: Server, tmp_path: Path) -> None:
    """RAG_EMBED_URL sends ingestion's and search's embedding to an OpenAI-compatible /v1/embeddings."""
    corpus = make_corpus(tmp_path / "corpus")
    remote = {"RAG_EMBED_URL": server.url + "/v1", "RAG_EMBED_API_KEY": KEY, "RAG_COLLECTION": "remote"}
    env = cli_env(tmp_path / "data") | remote
    ingested = subprocess.run(
        [RAG_BIN, "ingest", str(corpus), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ingested.returncode == 0 and "added 7" in ingested.stdout, ingested.stdout + ingested.stderr
    asked = subprocess.run(
        [RAG_BIN, "ask", "--json", "What do alpacas eat?"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert json.loads(asked.stdout)["sources"][0]["source"] == "guide.md", asked.stderr
    local = subprocess.run(
        [RAG_BIN, "ask", "What do alpacas eat?"],
        env=cli_env(tmp_path / "data") | {"RAG_COLLECTION": "remote"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        local.returncode == 2
        and "built with embedder 'remote:sentence-transformers/all-MiniLM-L6-v2'" in local.stderr
    )
    wrong_key = subprocess.run(
        [RAG_BIN, "ask", "What do alpacas eat?"],
        env=env | {"RAG_EMBED_API_KEY": "sk-wrong"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert wrong_key.returncode == 2
    assert wrong_key.stderr.strip().splitlines()[-1].startswith("error: the embedding server at 127.0.0.1:")


def test_a_filter_asks_within_chosen_documents_and_a_bad_one_is_a_400(server: Server) -> None:
    client = server.client()
    question = [{"role": "user", "content": "Which animals are found in the Andes?"}]
    unfiltered = client.chat.completions.create(model="test", messages=question)
    assert {s["source"] for s in (unfiltered.model_extra or {})["rag"]["sources"]} == {"report.pdf"}
    within = client.chat.completions.create(
        model="test", messages=question, extra_body={"rag": {"filter": {"documents": ["manual.rst"]}}}
    )
    rag = (within.model_extra or {})["rag"]
    assert not rag["refused"] and {s["source"] for s in rag["sources"]} == {"manual.rst"}, rag
    typed = client.chat.completions.create(
        model="test",
        messages=question,
        stream=True,
        extra_body={"rag": {"filter": {"types": ["rst", "md"], "ingested_since": "2000-01-01"}}},
    )
    last = [chunk for chunk in typed][-1]
    assert {s["source"] for s in (last.model_extra or {})["rag"]["sources"]} == {"manual.rst"}
    with pytest.raises(openai.BadRequestError, match="no document 'nope.md'") as unknown:
        client.chat.completions.create(
            model="test", messages=question, extra_body={"rag": {"filter": {"documents": ["nope.md"]}}}
        )
    assert unknown.value.code == "bad_filter"
    with pytest.raises(openai.BadRequestError):  # a misspelt field is refused, not ignored
        client.chat.completions.create(
            model="test", messages=question, extra_body={"rag": {"filter": {"document": ["report.pdf"]}}}
        )


def test_the_citation_viewer_is_behind_the_key_and_opens_only_what_is_there(server: Server) -> None:
    with server.http() as http:
        docs = {d["source"]: d["doc_id"] for d in http.get("/v1/collections/test/documents").json()["data"]}
        page = http.get(
            f"/view/test/{docs['guide.md']}", params={"chunk": 1, "hl": "Alpacas eat grass and hay."}
        )
        assert (
            page.status_code == 200 and "<mark class='quote'>Alpacas eat grass and hay.</mark>" in page.text
        )
        assert http.get(f"/view/test/{docs['guide.md']}/file").text.startswith("# Alpaca guide")
        assert http.get("/view/test/no-such-document").status_code == 404
        assert http.get(f"/view/nope/{docs['guide.md']}").status_code == 404
        assert http.get(f"/view/test/{docs['report.pdf']}/page/9.png").status_code == 404  # it has 2 pages
    assert httpx.get(f"{server.url}/view/test/{docs['guide.md']}").status_code == 401
    assert httpx.get(f"{server.url}/view/test/{docs['guide.md']}/file").status_code == 401
