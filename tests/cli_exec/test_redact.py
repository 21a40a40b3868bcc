"""Redactor removes known secrets in every spelling a CLI might print them."""

from __future__ import annotations

import json

from cli_exec.redact import Redactor


def test_raw_secret_is_replaced_everywhere():
    redactor = Redactor(["sk-ant-123456"])

    assert redactor.redact_text("a sk-ant-123456 b sk-ant-123456") == "a [REDACTED] b [REDACTED]"


def test_json_escaped_secret_is_replaced():
    secret = 'pa"ss\\word/é'
    redactor = Redactor([secret])

    for escaped in (json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]):
        assert redactor.redact_text(f'{{"k": "{escaped}"}}') == '{"k": "[REDACTED]"}'


def test_short_and_empty_secrets_are_ignored():
    redactor = Redactor(["", "abc", "12345"])

    assert not redactor.active
    assert redactor.redact_text("abc 12345") == "abc 12345"


def test_text_without_secrets_is_returned_unchanged():
    redactor = Redactor(["sk-ant-123456"])
    text = "nothing to see here"

    assert redactor.redact_text(text) is text


def test_longer_secret_containing_a_shorter_one_is_replaced_whole():
    redactor = Redactor(["abcdef", "abcdef-ghijkl"])

    assert redactor.redact_text("x abcdef-ghijkl y abcdef") == "x [REDACTED] y [REDACTED]"
