"""The chat's saved conversations (a side list: open, rename, delete) and the thumbs on its answers.

A tab's open conversation is the id in a hidden textbox, not a gr.State (whose heartbeat connection Gradio never
closes when the server stops). Conversations belong to the login (`request.username`; "" when the UI has none, as
in `rag chat`). The store failing is said once beside the list; the chat goes on unsaved.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import gradio as gr

from rag.answer import Answer
from rag.errors import RagError
from service.accounts import Principal, Role
from service.conversations import (
    ConversationNotFound,
    ConversationStore,
    ConversationStoreError,
    answer_record,
)
from ui.roles import hidden, layout, needs, shown

log = logging.getLogger("rag.ui")

THUMBS: dict[int | None, str] = {1: "Like", -1: "Dislike"}  # a rating as the chat's thumbs show it
LISTED = 200  # conversations in the side list; older ones stay in the store (`rag chat --list`)


def owner_of(request: gr.Request | None) -> str:
    return str(getattr(request, "username", None) or "")


class ConversationPanel:
    def __init__(self, store: ConversationStore, principal_of: Callable[[str | None], Principal]) -> None:
        """principal_of: who a login is; a conversation of a collection they may no longer read is not shown."""
        self.store = store
        self.principal_of = principal_of
        self._collection_choices: Callable[..., Any] = lambda name, _request=None: gr.update(value=name)

    def column(self) -> SimpleNamespace:
        """The side list and its tools, in the caller's column."""
        new_chat = gr.Button("New chat", size="sm", elem_id="new-chat")
        listed = gr.Radio(label="Conversations", choices=[], elem_id="conversations")
        note = gr.Markdown(elem_id="conversations-note")
        with gr.Accordion("Rename or delete", open=False, elem_id="conversation-tools"):
            name = gr.Textbox(label="Name", max_lines=1, elem_id="conversation-name")
            rename = gr.Button("Rename", size="sm", elem_id="rename-conversation")
            delete = gr.Button("Delete", size="sm", variant="stop", elem_id="delete-conversation")
            with gr.Row(visible=False, elem_id="confirm-delete-conversation") as confirm_row:
                gr.Markdown("Delete this conversation? This cannot be undone.")
                confirm = gr.Button("Delete it", variant="stop", elem_id="confirm-delete-conversation-yes")
                cancel = gr.Button("Keep it", elem_id="confirm-delete-conversation-no")
        # the tab's open conversation: hidden, and not a gr.State (see the module's note)
        conversation_id = gr.Textbox(visible=False, elem_id="conversation-id")
        return SimpleNamespace(
            new_chat=new_chat,
            listed=listed,
            note=note,
            name=name,
            rename=rename,
            delete=delete,
            confirm_row=confirm_row,
            confirm=confirm,
            cancel=cancel,
            conversation_id=conversation_id,
        )

    def wire(self, chat: SimpleNamespace, collection: Any, collection_choices: Callable[..., Any]) -> None:
        """The list's, the tools' and the thumbs' events (private: not part of the app's API; named, so they take
        no name an API route has, such as the documents' `delete`)."""
        self._collection_choices = collection_choices
        asked = [chat.chatbot, chat.box, chat.sources, chat.conversation_id, chat.name, chat.listed]
        chat.new_chat.click(_afresh, None, asked, api_name="new_chat", api_visibility="private")
        # the chat's own bin starts a new chat too, not more turns in the old one
        chat.chatbot.clear(_afresh, None, asked, api_name="clear_chat", api_visibility="private")
        opened = [chat.chatbot, chat.sources, chat.conversation_id, chat.name, chat.note]
        chat.listed.input(
            self.open, [chat.listed], opened, api_name="open_conversation", api_visibility="private"
        ).then(
            self.collection_of,
            [chat.conversation_id, collection],
            [collection],
            api_name="conversation_collection",
            api_visibility="private",
        )
        chat.rename.click(
            self.rename,
            [chat.conversation_id, chat.name],
            [chat.listed, chat.note],
            api_name="rename_conversation",
            api_visibility="private",
        )
        chat.delete.click(
            shown, None, chat.confirm_row, api_name="ask_delete_conversation", api_visibility="private"
        )
        chat.cancel.click(
            hidden, None, chat.confirm_row, api_name="keep_conversation", api_visibility="private"
        )
        deleted = [chat.chatbot, chat.sources, chat.conversation_id, chat.name, chat.listed, chat.note]
        chat.confirm.click(
            self.delete,
            [chat.conversation_id],
            deleted,
            api_name="delete_conversation",
            api_visibility="private",
        ).then(hidden, None, chat.confirm_row, api_visibility="private")
        chat.chatbot.like(
            self.rate,
            [chat.conversation_id, chat.feedback_note],
            [chat.feedback_note, chat.note],
            api_name="rate_answer",
            api_visibility="private",
        )

    def choices(self, owner: str, selected: str | None = None) -> Any:
        """The side list, newest first, with the open conversation selected: the owner's conversations in the
        collections they may read now."""
        principal = self.principal_of(owner or None)
        readable = [c for c in self.store.conversations(owner) if principal.may(c.collection, Role.READER)]
        return gr.update(choices=[(c.title, c.id) for c in readable[:LISTED]], value=selected or None)

    @needs(None)
    def listed(self, request: gr.Request | None = None) -> tuple[Any, str]:
        """The list when the page loads, and the note (why there is none)."""
        try:
            return self.choices(owner_of(request)), ""
        except RagError as exc:
            return gr.update(choices=[], value=None), _warning(exc)

    def save_turn(
        self,
        owner: str,
        conversation_id: str,
        collection: str,
        exchange: tuple[str, str],
        answer: Answer | None,
        sources_html: str,
    ) -> tuple[Any, Any, str]:
        """The question and its reply saved (a new conversation for a tab's first question); the conversation id,
        the list, and the note. Not saving is said, never fatal."""
        question, reply = exchange
        record = answer_record(answer) if answer else None
        try:
            try:
                conversation_id = conversation_id or self.store.create(owner, collection, question)
                self.store.add_turn(owner, conversation_id, question, reply, record, sources_html)
            except ConversationNotFound:  # deleted in another tab meanwhile: this turn starts a new one
                conversation_id = self.store.create(owner, collection, question)
                self.store.add_turn(owner, conversation_id, question, reply, record, sources_html)
            return conversation_id, self.choices(owner, conversation_id), ""
        except RagError as exc:
            log.warning("not saved: %s", exc)
            return gr.skip(), gr.skip(), _warning(exc)

    @needs(None)
    def open(self, conversation_id: str, request: gr.Request | None = None) -> tuple[Any, ...]:
        """The chat, its last sources, the id, its name, and the note: the conversation as it was left."""
        owner = owner_of(request)
        try:
            info = self.store.get(owner, conversation_id)
            self.principal_of(owner or None).require(info.collection, Role.READER)
            saved = self.store.messages(owner, info.id)
        except RagError as exc:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), _warning(exc)
        history = [{"role": m.role, "content": m.content} for m in saved]
        sources = next((m.sources_html for m in reversed(saved) if m.role == "assistant"), "")
        thumbs = [THUMBS.get(m.rating) for m in saved if m.role == "assistant"]  # as they were left
        return gr.update(value=history, feedback_value=thumbs), sources, info.id, info.title, ""

    @needs(None)
    def collection_of(self, conversation_id: str, current: str, request: gr.Request | None = None) -> Any:
        """An opened conversation continues in its own collection."""
        try:
            found = self.store.get(owner_of(request), conversation_id).collection
            return self._collection_choices(found, request)
        except RagError:
            return gr.update(value=current)

    @needs(None)
    def rename(self, conversation_id: str, title: str, request: gr.Request | None = None) -> tuple[Any, str]:
        owner = owner_of(request)
        if not conversation_id:
            return gr.skip(), "Open a conversation to rename it."
        try:
            self.store.rename(owner, conversation_id, title)
            return self.choices(owner, conversation_id), ""
        except RagError as exc:
            return gr.skip(), _warning(exc)

    @needs(None)
    def delete(self, conversation_id: str, request: gr.Request | None = None) -> tuple[Any, ...]:
        """The open conversation deleted; the chat starts afresh: (chat, sources, id, name, list, note)."""
        owner = owner_of(request)
        if not conversation_id:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), "Open a conversation to delete it."
        try:
            self.store.delete(owner, conversation_id)
            return _empty_chat(), "", "", "", self.choices(owner), ""
        except RagError as exc:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), _warning(exc)

    @needs(None)
    def rate(
        self, conversation_id: str, note: str, data: gr.LikeData, request: gr.Request | None = None
    ) -> tuple[str, str]:
        """A thumb on an answer, with the note typed beside it, stored with the question, the search and the
        passages that made the answer; (the note box, emptied when used; the panel's note)."""
        owner = owner_of(request)
        index = data.index if isinstance(data.index, int) else data.index[0]
        rating = 1 if data.liked is True else -1 if data.liked is False else 0
        if not rating:
            return gr.skip(), ""  # a thumb taken back: the last rating stays (rating again replaces it)
        try:
            saved = self.store.messages(owner, conversation_id) if conversation_id else []
            if index >= len(saved) or saved[index].role != "assistant":
                return gr.skip(), "That answer is not saved yet: rate it once it is finished."
            self.store.rate(owner, saved[index].id, rating, note or "")
        except RagError as exc:
            return gr.skip(), _warning(exc)
        thanks = "Thanks: noted as helpful." if rating > 0 else "Thanks: noted as not helpful."
        return "", thanks + (" Your note is saved with it." if (note or "").strip() else "")


@layout
def _afresh() -> tuple[Any, ...]:
    """A new chat: empty chat, box, sources, id and name; nothing selected in the list."""
    return _empty_chat(), "", "", "", "", gr.update(value=None)


def _empty_chat() -> Any:
    return gr.update(value=[], feedback_value=[])


def _warning(exc: Exception) -> str:
    unsaved = "; the chat still works, unsaved" if isinstance(exc, ConversationStoreError) else ""
    return f"⚠️ {html.escape(str(exc))}{unsaved}"
