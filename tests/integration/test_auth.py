"""Bearer-key auth on /v1/* when api_keys are configured."""
import requests
import openai
import pytest

from integration_support import API_KEY, FAKE_MODEL, FAKE_TEXT, assert_openai_error

USER = [{"role": "user", "content": "hi"}]


def test_no_key_401(auth_node):
    r = requests.post(auth_node.url + "/v1/chat/completions",
                   json={"model": FAKE_MODEL, "messages": USER}, timeout=10)
    assert_openai_error(r, 401)


def test_no_key_401_models(auth_node):
    assert_openai_error(requests.get(auth_node.url + "/v1/models", timeout=10), 401)


@pytest.mark.parametrize("header", ["Bearer sk-wrong", "Bearer ", "Basic " + API_KEY, API_KEY,
                                    "Bearer " + API_KEY + "x"])
def test_bad_key_401(auth_node, header):
    r = requests.post(auth_node.url + "/v1/chat/completions",
                   json={"model": FAKE_MODEL, "messages": USER},
                   headers={"Authorization": header}, timeout=10)
    assert_openai_error(r, 401)


def test_wrong_key_openai_client(auth_node):
    c = openai.OpenAI(base_url=auth_node.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as ei:
        c.chat.completions.create(model=FAKE_MODEL, messages=USER)
    assert ei.value.status_code == 401


def test_auth_checked_before_validation(auth_node):
    """An unauthenticated request learns nothing about the body: 401, not 400."""
    r = requests.post(auth_node.url + "/v1/chat/completions", data=b"{not json",
                   headers={"Content-Type": "application/json"}, timeout=10)
    assert_openai_error(r, 401)


def test_right_key_200(auth_node):
    c = openai.OpenAI(base_url=auth_node.url + "/v1", api_key=API_KEY, max_retries=0)
    r = c.chat.completions.create(model=FAKE_MODEL, messages=USER)
    assert r.object == "chat.completion"
    assert r.choices[0].message.content == FAKE_TEXT
    models = c.models.list()
    assert FAKE_MODEL in [m.id for m in models.data]


def test_health_needs_no_key(auth_node):
    r = requests.get(auth_node.url + "/health", timeout=10)
    assert r.status_code == 200
