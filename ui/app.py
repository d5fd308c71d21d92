"""`rag ui`: the Gradio chat app. Chat with cited, streamed answers; manage documents; see what is running."""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from rag.answer import Answer, Source, Status, Turn
from rag.config import AnswerMode, Settings
from rag.errors import RagError
from rag.filters import FilterRequest
from rag.store.payload import DocumentRecord
from service import RagService
from service.accounts import Principal, Role
from service.jobs import Job, JobState
from service.viewer import unlinked
from ui.citations import VIEWER, linked_text, quotes_by_source, source_link
from ui.conversations import ConversationPanel, owner_of
from ui.roles import hidden, layout, needs

log = logging.getLogger("rag.ui")

CSS = """
.sources details { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 4px 8px; margin: 4px 0; }
.sources summary { cursor: pointer; font-weight: 600; }
.sources .snippet { white-space: pre-wrap; font-size: 0.9em; opacity: 0.85; margin-top: 4px; }
.sources .snippet.code { font-family: var(--font-mono, monospace); font-size: 0.85em; }
.refused { color: var(--body-text-color-subdued); font-style: italic; }
.job { margin: 6px 0; } .job progress { width: 100%; height: 14px; accent-color: var(--color-accent); }
.unsupported { color: var(--error-text-color, #b45309); font-size: 0.9em; margin: 4px 0; }
"""

ChatHistory = list[dict[str, Any]]
_PROGRESS = gr.Progress()  # Gradio injects a live tracker for a parameter whose default is a Progress
TRAINING_NOTE = (
    "Training teaches a cross-encoder this collection's section headings, then tests it on documents it never "
    "saw, with questions unlike headings. It is installed only if it ranks those better than the search alone; "
    "otherwise it is set aside and the search answers as before. Uninstalling returns to the search alone."
)
UPLOAD_POLL_S = 0.5
JOBS_TICK_S = 2.0  # how often the Documents tab looks for ingestion jobs started elsewhere
PRUNE_LISTED = 20  # paths the prune question lists; a whole unmounted drive would make it a wall of text


def render_sources(answer: Answer, collection: str = "") -> str:
    """The numbered passages the answer was drawn from, in the order of their [n]; cited ones marked; each opens
    in its document (when the collection is known)."""
    if answer.refused:
        return (
            "<div class='refused'>No source: the documents do not contain an answer to this question.</div>"
        )
    cited = {s.n: s.cited_by for s in answer.sources}
    quotes = quotes_by_source(answer)
    items = [
        _source_item(
            s, cited.get(s.n), source_link(s, collection, quotes.get(s.n, []), "open in its document")
        )
        if collection
        else _source_item(s, cited.get(s.n))
        for s in sorted(answer.context, key=lambda s: s.n)
    ]
    notes = []
    if not cited:
        notes.append("<p class='refused'>The answer cites none of these passages.</p>")
    elif all(s.cited_by == "similarity" for s in answer.sources):
        notes.append(
            "<p class='refused'>The model wrote no [n]; ≈ marks the passages most similar to its answer.</p>"
        )
    if answer.unsupported:
        listed = "".join(f"<li>{html.escape(text)}</li>" for text in answer.unsupported)
        notes.append(f"<div class='unsupported'>⚠ Not supported by the passages:<ul>{listed}</ul></div>")
    if answer.invalid_citations:
        notes.append(
            f"<p class='refused'>Citations to passages that do not exist: {answer.invalid_citations}</p>"
        )
    return "<div class='sources'>" + "".join(notes + items) + "</div>"


def _source_item(s: Source, cited_by: str | None, opener: str = "") -> str:
    page = html.escape(s.location())
    title = f" — {html.escape(s.title)}" if s.title else ""
    mark = {
        "model": " ✓ cited",
        "quoted": " ✓ quoted",
        "similarity": " ≈ matches the answer",
        "unsupported": " ⚠ cited, but does not support the sentence",
    }.get(cited_by or "", "")
    kind = "snippet code" if looks_like_code(s.text) else "snippet"
    return (
        f"<details class='source'><summary>[{s.n}] {html.escape(s.source)}{page}{title} · score {s.score:.2f}{mark}"
        f"</summary><div class='{kind}'>{html.escape(s.text)}</div>{opener}</details>"
    )


_CODE_LINE = re.compile(
    r"^(?: {4}|\t|>>> |\$ |```)|[;{}]\s*$|^\s*(?:def|class|import|return|my|sub|if|for)\b.*[:;{(]"
)


def looks_like_code(text: str) -> bool:
    """Enough code-shaped lines (indented, prompts, braces, semicolons) that a proportional font would mangle."""
    lines = [line for line in text.splitlines() if line.strip()]
    return bool(lines) and sum(bool(_CODE_LINE.search(line)) for line in lines) >= max(2, len(lines) // 4)


def _pending(text: str) -> str:
    """A sign of life in the sources panel while the answer is on its way (`pending`: not final)."""
    return f"<div class='refused pending'>{html.escape(text[:1].upper() + text[1:])}</div>"


def _failed(history: ChatHistory, why: str) -> tuple[ChatHistory, str]:
    """The reply and the sources panel when answering failed: the reason, in both."""
    history[-1]["content"] = f"⚠️ {why}"
    return history, f"<div class='refused'>⚠️ {html.escape(why)}</div>"


def _turns(history: ChatHistory) -> list[Turn]:
    """The chat as the pipeline reads it: the replies' citation links back to [n]."""
    return [
        Turn(m["role"], unlinked(_plain(m["content"])))
        for m in history
        if m.get("role") in ("user", "assistant")
    ]


def _plain(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return str(content)


def _warning_html(why: str) -> str:
    return f"<p class='refused'>⚠️ {html.escape(why)}</p>"


class ChatApp:
    def __init__(self, settings: Settings, service: RagService | None = None) -> None:
        """service: one shared with the API when both are served; else the UI's own."""
        self.settings = settings
        self.service = service or RagService(settings)
        self.conversations = ConversationPanel(self.service.conversations, self.principal_of)

    def principal_of(self, user: str | None) -> Principal:
        """Who a login is, with their roles now (ui/roles.py checks it before every action)."""
        return self.service.principal(user)

    # ------------------------------------------------------------------ chat

    @layout
    def submit(self, message: str, history: ChatHistory) -> tuple[Any, Any, Any]:
        """The question moves into the chat at once, unqueued, and the box empties for the next one; `respond`
        answers it. (Emptied by the answering event instead, the box lost what the user typed in the second
        before that event started, or when Gradio applied its last update again on completing.)"""
        message = (message or "").strip()
        if not message:
            return gr.skip(), gr.skip(), gr.skip()  # nothing asked: the last answer and its sources stay
        return [*history, {"role": "user", "content": message}], "", _pending("Asking…")

    @needs(Role.READER, refused=lambda why: (gr.skip(), _warning_html(why), gr.skip(), gr.skip(), gr.skip()))
    def respond(
        self,
        history: ChatHistory,
        conversation_id: str,
        collection: str,
        top_k: int,
        rerank: bool,
        mode: str,
        documents: list[str] | None = None,
        types: list[str] | None = None,
        folder: str = "",
        since: str = "",
        until: str = "",
        request: gr.Request | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        """Answer the chat's last message, if it is a question not yet answered, searching only within the
        filter's documents, types, folder and ingestion dates when any is set: the answer streams into the chat,
        the sources panel follows when it is done; then the turn is saved in the tab's conversation (a new one
        for its first question). Yields (chat, sources, conversation id, conversation list, list note)."""
        if not history or history[-1].get("role") != "user":
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        question, sources, chat = _plain(history[-1]["content"]), "", history
        answered: list[Answer] = []
        within = FilterRequest(
            list(documents or []), list(types or []), folder or None, since or None, until or None
        )
        for chat, sources in self._answer(history, collection, (top_k, rerank, mode, within), answered):
            yield chat, sources, gr.skip(), gr.skip(), gr.skip()
        saved = self.conversations.save_turn(
            owner_of(request),
            conversation_id,
            collection,
            (question, _plain(chat[-1]["content"])),
            answered[0] if answered else None,
            sources,
        )
        yield chat, sources, *saved

    def _answer(
        self,
        history: ChatHistory,
        collection: str,
        options: tuple[int, bool, str, FilterRequest],
        answered: list[Answer],
    ) -> Iterator[tuple[ChatHistory, str]]:
        """(chat, sources panel) as the answer to the last message streams; the final Answer into answered."""
        top_k, rerank, mode, within = options
        message = _plain(history[-1]["content"])
        prior = _turns(history[:-1])
        history = [*history, {"role": "assistant", "content": ""}]
        yield history, _pending("Opening the collection…")
        try:
            pipeline = self.service.pipeline(collection)
            flt = self.service.search_filter(collection, within)
            text = ""
            events = pipeline.stream(
                message, prior, top_k=int(top_k), rerank=bool(rerank), mode=mode or None, flt=flt
            )
            for event in events:
                if isinstance(event, Answer):
                    history[-1]["content"] = _final_text(event, collection)
                    answered.append(event)
                    yield history, _within_note(within) + render_sources(event, collection)
                elif isinstance(event, Status):
                    yield history, _pending(event.text)
                else:
                    text += event.text
                    history[-1]["content"] = text
                    yield history, _pending("Writing the answer…")
        except RagError as exc:
            yield _failed(history, str(exc))
        # A bug: said in the chat, not left as an empty reply and a sources panel that waits on.
        except Exception as exc:
            log.exception("answering %r failed", message)
            yield _failed(history, f"answering failed ({type(exc).__name__}: {exc}); the server log has more")

    @needs(Role.READER, fallback=lambda app: app.settings.collection)
    def chat_api(
        self,
        message: str,
        collection: str = "",
        top_k: int = 0,
        rerank: bool = True,
        mode: str = "",
        request: gr.Request | None = None,
    ) -> dict[str, Any]:
        """`/chat` for gradio_client: one question in, the answer and its sources out."""
        try:
            pipeline = self.service.pipeline(collection or self.settings.collection)
            answer = pipeline.ask(message, top_k=top_k or None, rerank=rerank, mode=mode or None)
        except RagError as exc:
            raise gr.Error(str(exc)) from None
        return answer.as_json()

    # ------------------------------------------------------------------ documents

    @needs(Role.EDITOR, refused=lambda why: (f"⚠️ {why}", gr.update(), gr.update(), ""))
    def upload(
        self, files: list[str] | None, collection: str, request: gr.Request | None = None
    ) -> Iterator[tuple[str, Any, Any, str]]:
        """Save the files and start their ingestion job; its progress shows until it ends (the chat stays usable,
        and leaving the page does not stop the job: the jobs panel shows it on return)."""
        if not files:
            rows, _, error = self._documents_view(collection)
            yield (
                error or "Choose files (or a zip) first.",
                rows,
                gr.update(),
                self.jobs_html(collection, request),
            )
            return
        try:
            saved = self.service.save_uploads(collection, list(files), owner_of(request))
            job = self.service.ingest_uploads(collection)
        except RagError as exc:
            rows, picker, _ = self._documents_view(collection)
            yield f"⚠️ {exc}", rows, picker, self.jobs_html(collection, request)
            return
        finally:
            _remove_received(files)
        rejected = [f"rejected {name}: {why}" for name, why in saved.rejected]
        while not job.done.wait(UPLOAD_POLL_S):
            yield job.progress_line(), gr.update(), gr.update(), self.jobs_html(collection, request)
        rows, picker, _ = self._documents_view(collection)
        yield "\n".join([_job_outcome(job), *rejected]), rows, picker, self.jobs_html(collection, request)

    @needs(Role.READER, refused=_warning_html)
    def jobs_html(self, collection: str, request: gr.Request | None = None) -> str:
        """The collection's waiting and running ingestion jobs, each with a progress bar (uploads from any tab,
        watched folders)."""
        active = [j for j in self.service.jobs.jobs(collection) if not j.state.finished][::-1]
        return "".join(_job_html(job) for job in active)

    @needs(Role.EDITOR, refused=lambda why: f"⚠️ {why}")
    def cancel_ingestion(self, collection: str, request: gr.Request | None = None) -> str:
        """Cancel the collection's waiting and running ingestion jobs. (Not this tab's only: that would take a
        gr.State, whose heartbeat connection Gradio never closes when the server stops, so Ctrl+C would hang.)"""
        targets = [j.id for j in self.service.jobs.jobs(collection) if not j.state.finished]
        if not targets:
            return "No ingestion is running."
        for target in targets:
            try:
                self.service.cancel_job(target, collection, owner_of(request))
            except RagError:
                continue  # finished meanwhile
        return "Cancelling: the file being read is finished or dropped; the files done stay."

    @needs(Role.EDITOR, refused=lambda why: (gr.update(visible=False), f"⚠️ {why}"))
    def confirm_delete(
        self, doc_id: str | None, collection: str, request: gr.Request | None = None
    ) -> tuple[Any, str]:
        """The first click only asks: deleting cannot be undone."""
        if not doc_id:
            return gr.update(visible=False), "Pick a document to delete."
        docs = {d.doc_id: d.source for d in self._documents_or_none(collection)}
        if doc_id not in docs:
            return gr.update(visible=False), "That document is no longer in this collection."
        return gr.update(
            visible=True
        ), f"Delete **{docs[doc_id]}** from {collection!r}? This cannot be undone."

    def _documents_or_none(self, collection: str) -> list[DocumentRecord]:
        try:
            return self.service.documents(collection)
        except RagError:
            return []

    @needs(Role.EDITOR, refused=lambda why: (f"⚠️ {why}", gr.update(), gr.update()))
    def delete(
        self, doc_id: str | None, collection: str, request: gr.Request | None = None
    ) -> tuple[str, list[list[Any]], Any]:
        if not doc_id:
            rows, _, error = self._documents_view(collection)
            return error or "Pick a document to delete.", rows, gr.update()
        try:
            source = self.service.delete_document(collection, doc_id, owner_of(request))
            message = f"Deleted {source}."
        except RagError as exc:
            message = f"⚠️ {exc}"
        rows, picker, _ = self._documents_view(collection)
        return message, rows, picker

    @needs(Role.EDITOR, refused=lambda why: (gr.update(visible=False), "", f"⚠️ {why}"))
    def confirm_prune(self, collection: str, request: gr.Request | None = None) -> tuple[Any, str, Any]:
        """The first click lists what would go (a file on a drive that is not mounted looks gone too); the confirm
        row, its question, and the status line."""
        try:
            gone = self.service.collection(collection).missing_documents()
        except RagError as exc:
            return gr.update(visible=False), "", f"⚠️ {exc}"
        if not gone:
            return gr.update(visible=False), "", "No document's file is gone: nothing to remove."
        listed = [f"- {_markdown_escaped(d.path)}" for d in gone[:PRUNE_LISTED]]
        if len(gone) > PRUNE_LISTED:
            listed.append(f"- … and {len(gone) - PRUNE_LISTED} more")
        question = (
            f"Remove **{len(gone)} documents** whose files are gone from {collection!r}? "
            "Their passages go too; this cannot be undone.\n\n" + "\n".join(listed)
        )
        return gr.update(visible=True), question, gr.update()

    @needs(Role.EDITOR, refused=lambda why: (f"⚠️ {why}", gr.update(), gr.update()))
    def prune(self, collection: str, request: gr.Request | None = None) -> tuple[str, list[list[Any]], Any]:
        try:
            removed = self.service.remove_missing(collection, owner_of(request))
            message = (
                f"Removed {len(removed)} documents whose files are gone."
                if removed
                else "No document's file is gone: nothing to remove."
            )
        except RagError as exc:
            message = f"⚠️ {exc}"
        rows, picker, _ = self._documents_view(collection)
        return message, rows, picker

    @needs(Role.READER, refused=lambda why: (f"⚠️ {why}", [], gr.update(choices=[], value=None), ""))
    def refresh(
        self, collection: str, request: gr.Request | None = None
    ) -> tuple[str, list[list[Any]], Any, str]:
        rows, picker, error = self._documents_view(collection)
        return error or f"{len(rows)} documents.", rows, picker, self._status_md(collection)

    def _documents_view(self, collection: str) -> tuple[list[list[Any]], Any, str | None]:
        """Table rows and the delete picker from one read of the store, or the reason it cannot be read."""
        try:
            docs = self.service.documents(collection)
        except RagError as exc:  # e.g. the embedded store is held by a running `rag ingest`
            return [], gr.update(choices=[], value=None), f"⚠️ {exc}"
        rows = [
            [
                d.source,
                d.file_type,
                d.chunks,
                d.pages or "",
                d.ocr_pages or "",
                "incomplete: interrupted, ingest again" if d.incomplete else d.ingested_at,
            ]
            for d in docs
        ]
        choices = [(d.source, d.doc_id) for d in docs]
        return rows, gr.update(choices=choices, value=None), None

    @needs(
        Role.READER,
        refused=lambda why: (gr.update(choices=[], value=[], info=why), gr.update(choices=[], value=[])),
    )
    def filter_choices(self, collection: str, request: gr.Request | None = None) -> tuple[Any, Any]:
        """The collection's documents and file types, to search within."""
        docs = self._documents_or_none(collection)
        return (
            gr.update(choices=sorted(d.source for d in docs), value=[]),
            gr.update(choices=sorted({d.file_type for d in docs if d.file_type}), value=[]),
        )

    @needs(None)
    def collection_choices(self, current: str | None = None, request: gr.Request | None = None) -> Any:
        """The collections this login may read, the current one kept if it is among them."""
        principal = self.principal_of(owner_of(request) or None)
        try:
            names = self.service.visible_collections(principal)
        except RagError:
            names = principal.visible([self.settings.collection])
        fallback = self.settings.collection if self.settings.collection in names else next(iter(names), None)
        return gr.update(choices=names, value=current if current in names else fallback)

    @needs(Role.ADMIN, of="name", refused=lambda why: (gr.update(), f"⚠️ {why}", gr.skip()))
    def create_collection(self, name: str, request: gr.Request | None = None) -> tuple[Any, str, str]:
        """Create the named collection and switch to it; typing a name creates nothing."""
        try:
            created = self.service.create_collection(name, owner_of(request))
        except RagError as exc:
            return gr.update(), f"⚠️ {exc}", name
        return self.collection_choices(created, request), f"Created collection {created!r}.", ""

    @needs(Role.EDITOR, refused=lambda why: (f"⚠️ {why}", gr.update()))
    def train_reranker(
        self,
        collection: str,
        minutes: float,
        progress: gr.Progress = _PROGRESS,
        request: gr.Request | None = None,
    ) -> tuple[str, str]:
        """Train the collection's reranker with a progress bar over the time budget; say what it did."""
        budget = max(1.0, float(minutes) * 60)
        started = time.monotonic()
        progress(0.0, desc="Mining training questions")

        def on_step(step: int, loss: float) -> None:
            elapsed = time.monotonic() - started
            progress(min(1.0, elapsed / budget), desc=f"Training: step {step}, loss {loss:.3f}")

        try:
            outcome = self.service.train_reranker(collection, float(minutes), on_step, owner_of(request))
            message = outcome.summary(collection).replace("\n", "\n\n")
        except RagError as exc:
            message = f"⚠️ {exc}"
        return message, self._status_md(collection)

    @needs(Role.EDITOR, refused=lambda why: (f"⚠️ {why}", gr.update()))
    def uninstall_reranker(self, collection: str, request: gr.Request | None = None) -> tuple[str, str]:
        try:
            message = self.service.uninstall_reranker(collection, owner_of(request))
        except RagError as exc:
            message = f"⚠️ {exc}"
        return message, self._status_md(collection)

    def _mode_note(self) -> str:
        """Why the answer mode is what it is, and how to change it for good."""
        if self.settings.openai_base_url:
            default = (
                f"your model at {self.settings.openai_base_url} writes the answers, each sentence checked "
                "against its passages"
            )
        else:
            default = (
                "the embedded model is small, so answers quote the documents' own sentences and follow-up "
                "questions are searched with the conversation's words, not the model's rewrite"
            )
        return f"Default here: {default}. `RAG_ANSWER_MODE` sets it for good."

    def _status_md(self, collection: str) -> str:
        status = self.service.status(collection)
        return "\n".join(f"- **{k}**: {v}" for k, v in status.items())

    # ------------------------------------------------------------------ layout

    def build(self) -> gr.Blocks:
        with gr.Blocks(title="Ask your documents") as demo:
            with gr.Row():
                gr.Markdown(
                    "## Ask your documents\nAnswers come only from your documents, with numbered sources."
                )
                if self.service.credentials().required:  # Gradio's /logout ends the login's sessions
                    gr.Button("Log out", link="/logout", size="sm", scale=0, elem_id="logout")
            chat, docs, options = self._chat_tab(), self._documents_tab(), self._settings_tab()
            self._wire_chat(chat, options)
            self._wire_documents(docs, options)
            self._wire_settings(options, docs)
            demo.load(self.conversations.listed, None, [chat.listed, chat.note], api_visibility="private")
            demo.load(
                self.collection_choices, [options.collection], [options.collection], api_visibility="private"
            ).then(
                self.refresh, [options.collection], [*docs.outputs, options.status], api_visibility="private"
            ).then(self.filter_choices, [options.collection], chat.within[:2], api_visibility="private")
            options.collection.change(
                self.filter_choices, [options.collection], chat.within[:2], api_visibility="private"
            )
            gr.api(self.chat_api, api_name="chat", concurrency_limit=8)
        return demo

    def _chat_tab(self) -> SimpleNamespace:
        with gr.Tab("Chat"), gr.Row():
            with gr.Column(scale=1, min_width=180):
                side = self.conversations.column()
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Conversation", height=480, elem_id="chatbot")
                with gr.Row():
                    box = gr.Textbox(
                        placeholder="Ask a question about your documents…",
                        show_label=False,
                        scale=5,
                        elem_id="question",
                    )
                    send = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
                within = _within_controls()
                feedback_note = gr.Textbox(
                    placeholder="A note to go with your thumbs up or down on an answer (optional): type it, then click",
                    show_label=False,
                    max_lines=2,
                    elem_id="feedback-note",
                )
            with gr.Column(scale=2):
                gr.Markdown("### Sources")
                sources = gr.HTML(elem_id="sources")
                gr.HTML(VIEWER, elem_id="viewer")
        return SimpleNamespace(
            chatbot=chatbot,
            box=box,
            send=send,
            sources=sources,
            feedback_note=feedback_note,
            within=within,
            **vars(side),
        )

    def _documents_tab(self) -> SimpleNamespace:
        with gr.Tab("Documents"):
            message = gr.Textbox(label="Status", interactive=False, lines=4, elem_id="documents-status")
            uploads = gr.File(
                label="Upload documents or a zip", file_count="multiple", type="filepath", elem_id="uploads"
            )
            with gr.Row():
                ingest = gr.Button("Ingest uploads", variant="primary", scale=3, elem_id="ingest")
                cancel_ingest = gr.Button("Cancel ingestion", scale=1, elem_id="cancel-ingest")
            jobs = gr.HTML(elem_id="ingestion-jobs")
            ticker = gr.Timer(JOBS_TICK_S)
            table = gr.Dataframe(
                headers=["source", "type", "chunks", "pages", "read by OCR", "ingested"],
                interactive=False,
                wrap=True,
                elem_id="documents-table",
            )
            with gr.Row():
                pick = gr.Dropdown(label="Document", choices=[], scale=3, elem_id="document-pick")
                delete = gr.Button("Delete document", variant="stop", scale=1, elem_id="delete")
                refresh = gr.Button("Refresh", scale=1)
            with gr.Row(visible=False, elem_id="confirm-delete") as confirm_row:
                confirm_text = gr.Markdown()
                confirm = gr.Button("Delete", variant="stop", scale=0, elem_id="confirm")
                cancel = gr.Button("Cancel", scale=0, elem_id="cancel")
            prune = gr.Button("Remove documents whose files are gone", size="sm", elem_id="prune")
            with gr.Row(visible=False, elem_id="confirm-prune") as prune_row:
                prune_text = gr.Markdown()
                prune_confirm = gr.Button("Remove them", variant="stop", scale=0, elem_id="prune-confirm")
                prune_cancel = gr.Button("Cancel", scale=0, elem_id="prune-cancel")
        return SimpleNamespace(
            message=message,
            uploads=uploads,
            ingest=ingest,
            cancel_ingest=cancel_ingest,
            jobs=jobs,
            ticker=ticker,
            table=table,
            pick=pick,
            delete=delete,
            refresh=refresh,
            confirm_row=confirm_row,
            confirm_text=confirm_text,
            confirm=confirm,
            cancel=cancel,
            prune=prune,
            prune_row=prune_row,
            prune_text=prune_text,
            prune_confirm=prune_confirm,
            prune_cancel=prune_cancel,
            outputs=[message, table, pick],
        )

    def _settings_tab(self) -> SimpleNamespace:
        with gr.Tab("Settings"):
            with gr.Row():
                first = (
                    [] if self.service.accounts_on else [self.settings.collection]
                )  # set on load, per login
                collection = gr.Dropdown(
                    label="Collection",
                    choices=first,
                    value=next(iter(first), None),
                    elem_id="collection",
                    scale=2,
                )
                new_name = gr.Textbox(
                    label="New collection",
                    placeholder="letters, digits, - or _",
                    elem_id="new-collection",
                    scale=2,
                )
                create = gr.Button("Create collection", elem_id="create-collection", scale=1)
            collection_message = gr.Markdown(elem_id="collection-message")
            top_k = gr.Slider(5, 100, value=self.settings.top_k, step=1, label="Candidates (top-k)")
            rerank = gr.Checkbox(value=True, label="Rerank with the cross-encoder (when one is configured)")
            mode = gr.Radio(
                [
                    ("Evidence: the documents' own sentences, each cited", AnswerMode.EVIDENCE.value),
                    ("Generated: the model's answer", AnswerMode.GENERATE.value),
                    ("Both: evidence, then the model's summary", AnswerMode.BOTH.value),
                ],
                value=self.settings.answer_mode,
                label="Answer",
                elem_id="answer-mode",
            )
            gr.Markdown(self._mode_note(), elem_id="answer-mode-note")
            # filled when the page loads, for the collections its login may read
            status = gr.Markdown(
                "" if self.service.accounts_on else self._status_md(self.settings.collection)
            )
            with gr.Row():
                train_minutes = gr.Slider(
                    0.05, 60, value=10, step=0.05, label="Training time budget (minutes)", scale=3
                )
                train = gr.Button("Train reranker", elem_id="train-reranker", scale=1)
                uninstall = gr.Button("Uninstall reranker", elem_id="uninstall-reranker", scale=1)
            gr.Markdown(TRAINING_NOTE, elem_id="train-note")
            train_message = gr.Markdown(elem_id="train-message")
        return SimpleNamespace(
            collection=collection,
            new_name=new_name,
            create=create,
            collection_message=collection_message,
            top_k=top_k,
            rerank=rerank,
            mode=mode,
            status=status,
            train_minutes=train_minutes,
            train=train,
            uninstall=uninstall,
            train_message=train_message,
        )

    def _wire_chat(self, chat: SimpleNamespace, options: SimpleNamespace) -> None:
        asked = [chat.chatbot, chat.box, chat.sources]
        settings = [options.collection, options.top_k, options.rerank, options.mode]
        answered = [chat.chatbot, chat.sources, chat.conversation_id, chat.listed, chat.note]
        for trigger in (chat.box.submit, chat.send.click):
            trigger(self.submit, [chat.box, chat.chatbot], asked, queue=False, api_visibility="private").then(
                self.respond,
                [chat.chatbot, chat.conversation_id, *settings, *chat.within],
                answered,
                api_visibility="private",
                concurrency_limit=8,
            )
        self.conversations.wire(chat, options.collection, self.collection_choices)

    def _wire_documents(self, docs: SimpleNamespace, options: SimpleNamespace) -> None:
        collection, hide = options.collection, hidden
        docs.ingest.click(
            self.upload,
            [docs.uploads, collection],
            [*docs.outputs, docs.jobs],
            api_name="upload",
            concurrency_limit=4,  # each waits on its own job; the jobs queue per collection in the service
        )
        docs.cancel_ingest.click(
            self.cancel_ingestion, [collection], docs.message, api_name="cancel_ingestion"
        )
        docs.ticker.tick(
            self.jobs_html, [collection], docs.jobs, api_visibility="private", concurrency_limit=None
        )
        docs.delete.click(
            self.confirm_delete,
            [docs.pick, collection],
            [docs.confirm_row, docs.confirm_text],
            api_visibility="private",
        )
        docs.confirm.click(self.delete, [docs.pick, collection], docs.outputs, api_name="delete").then(
            hide, None, docs.confirm_row, api_visibility="private"
        )
        docs.cancel.click(hide, None, docs.confirm_row, api_visibility="private")
        docs.prune.click(
            self.confirm_prune,
            [collection],
            [docs.prune_row, docs.prune_text, docs.message],
            api_visibility="private",
        )
        docs.prune_confirm.click(self.prune, [collection], docs.outputs, api_name="prune").then(
            hide, None, docs.prune_row, api_visibility="private"
        )
        docs.prune_cancel.click(hide, None, docs.prune_row, api_visibility="private")
        refreshed = [*docs.outputs, options.status]
        docs.refresh.click(self.refresh, [collection], refreshed, api_name="documents")

    def _wire_settings(self, options: SimpleNamespace, docs: SimpleNamespace) -> None:
        options.create.click(
            self.create_collection,
            [options.new_name],
            [options.collection, options.collection_message, options.new_name],
            api_name="create_collection",
            concurrency_limit=1,
        )
        trained = [options.train_message, options.status]
        options.train.click(
            self.train_reranker,
            [options.collection, options.train_minutes],
            trained,
            api_name="train_reranker",
            concurrency_limit=1,
        )
        options.uninstall.click(
            self.uninstall_reranker,
            [options.collection],
            trained,
            api_name="uninstall_reranker",
            concurrency_limit=1,
        )
        refreshed = [*docs.outputs, options.status]
        options.collection.change(self.refresh, [options.collection], refreshed, api_visibility="private")


def _job_html(job: Job) -> str:
    status = job.status()
    # in chunks, which move, not files: one big file would hold the bar still for minutes
    done, found = status["chunks_embedded"], status["chunks_found"]
    bar = f"<progress value='{done}' max='{found}'></progress>" if found else "<progress></progress>"
    line = html.escape(f"{job.origin}: {job.progress_line()}")
    return f"<div class='job' data-job='{html.escape(job.id)}'>{bar}<div>{line}</div></div>"


def _job_outcome(job: Job) -> str:
    if job.state is JobState.FAILED:
        return f"⚠️ ingestion failed: {job.error}"
    if job.summary is None:
        return "Cancelled before it started: nothing was ingested."
    return job.summary.render()


def _within_controls() -> list[Any]:
    """The filter beside the question: documents, types, a folder, ingestion dates (in FilterRequest's order)."""
    with gr.Accordion("Search within", open=False, elem_id="search-within"):
        with gr.Row():
            documents = gr.Dropdown(
                label="Documents", multiselect=True, choices=[], elem_id="filter-documents", scale=3
            )
            types = gr.Dropdown(label="Types", multiselect=True, choices=[], elem_id="filter-types", scale=1)
        with gr.Row():
            folder = gr.Textbox(label="Folder", placeholder="e.g. guides/", elem_id="filter-folder")
            since = gr.Textbox(label="Ingested since", placeholder="YYYY-MM-DD", elem_id="filter-since")
            until = gr.Textbox(label="Ingested until", placeholder="YYYY-MM-DD", elem_id="filter-until")
    return [documents, types, folder, since, until]


def _within_note(within: FilterRequest) -> str:
    """What the search was limited to, above the sources, so a refusal under a filter is read as one."""
    if within.is_empty():
        return ""
    parts = []
    if within.documents:
        parts.append("documents " + ", ".join(within.documents))
    if within.types:
        parts.append("types " + ", ".join(within.types))
    if within.path:
        parts.append(f"folder {within.path}")
    if within.ingested_since or within.ingested_until:
        parts.append(f"ingested {within.ingested_since or '…'} to {within.ingested_until or '…'}")
    return f"<p class='within'>Searched only within {html.escape('; '.join(parts))}.</p>"


def _final_text(answer: Answer, collection: str) -> str:
    """The answer (a refusal in italics), each [n] a link to its passage in its document, with what was searched
    under it when that was not the question."""
    text = linked_text(answer.answer, answer, collection) if not answer.refused else f"_{answer.answer}_"
    if answer.searched_for:
        text += f"\n\n🔎 searched for: {_markdown_escaped(answer.searched_for)}"
    return text


_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>#|~])")


def _markdown_escaped(text: str) -> str:
    """A user's words shown as they are, not as Markdown or HTML."""
    return _MARKDOWN.sub(r"\\\1", text)


def _remove_received(files: list[str]) -> None:
    """The files Gradio received, once copied into the upload folder (or refused): they are not kept twice. Only
    files inside Gradio's own folder are touched."""
    from gradio.utils import get_upload_folder

    received = Path(get_upload_folder()).resolve()
    for name in files:
        path = Path(name).resolve()
        if path.is_relative_to(received) and path != received:
            path.unlink(missing_ok=True)
