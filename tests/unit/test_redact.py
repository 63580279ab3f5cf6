"""indexer.redact: secrets are taken out of messages by their structure, never by their text."""

import pytest

from indexer.redact import first_line, redact


@pytest.mark.parametrize("text, expected", [
    ("connection to host=db password=s3cret port=5432 failed", "connection to host=db password=*** port=5432 failed"),
    ("dsn: password='a b\\' c' user=reader", "dsn: password=*** user=reader"),
    ("DRIVER={ODBC 18};SERVER=db;UID=reader;PWD={s3;cr}}et};Encrypt=yes", "DRIVER={ODBC 18};SERVER=db;UID=reader;PWD=***;Encrypt=yes"),
    ("...;PWD=plain;UID=x", "...;PWD=***;UID=x"),
    ("cannot reach https://reader:p%40ss@db.example:9200/x", "cannot reach https://reader:***@db.example:9200/x"),
    ("headers: {'Authorization': 'Basic cmVhZGVyOnMzY3JldA=='}", "headers: {'Authorization': 'Basic ***'}"),
    ("Authorization: ApiKey abc123==", "Authorization: ApiKey ***"),
    ("authorization=Bearer tok.en", "authorization=Bearer ***"),
])
def test_the_secret_of_each_structure_is_replaced(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("secret", ["x", "dex", "54329"])
def test_a_short_secret_leaves_the_rest_of_the_message_as_it_was(secret):
    """Replacing the secret's text showed it by position: user "in***er", port ***."""
    message = ('connection to server at "127.0.0.1", port 54329 failed: FATAL:  password authentication '
               'failed for user "indexer"')
    assert redact(message) == message
    assert redact(f"host=127.0.0.1 port=54329 user=indexer password={secret}") == \
        "host=127.0.0.1 port=54329 user=indexer password=***"


def test_first_line_is_the_first_non_empty_line_redacted():
    assert first_line("\n  FATAL: password=abc refused\nDETAIL: more\n") == "FATAL: password=*** refused"
    assert first_line("") == ""


@pytest.mark.parametrize("text, expected", [
    # found in review: ODBC values run to ";" (spaces included), libpq ones to the next key
    ("DRIVER=x;PWD=my pass;UID=sa", "DRIVER=x;PWD=***;UID=sa"),
    ("Password=secret;User ID=sa", "Password=***;User ID=sa"),
    ("host=db password=s3cret port=5 user=x", "host=db password=*** port=5 user=x"),
])
def test_a_value_ends_where_its_connection_string_ends_it(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "GET https://es.example:9200/users/_doc/john@example.com failed",   # a port, then an @ in the path
    "authorization: action [indices:data/write/bulk] is unauthorized",  # no credentials after it
    "the password was accepted",
])
def test_ordinary_text_is_left_as_it_is(text):
    assert redact(text) == text
