from modelreg.storage.s3 import open_s3


def test_smoke(s3_url: str) -> None:
    objects, refs = open_s3(s3_url)
    oid = objects.put_bytes(b"hello")
    assert objects.put_bytes(b"hello") == oid
    assert objects.get_bytes(oid) == b"hello"
    assert list(objects.ids()) == [oid]
    assert refs.compare_and_swap("models/a", None, b"one")
    body, token = refs.read_versioned("models/a")
    assert body == b"one"
    assert not refs.compare_and_swap("models/a", None, b"two")
    assert refs.compare_and_swap("models/a", token, b"two")
    assert not refs.compare_and_swap("models/a", token, b"three")
    assert list(refs.names("models")) == ["models/a"]
    _, token = refs.read_versioned("models/a")
    assert not refs.delete_if("models/a", '"abc"')
    assert refs.delete_if("models/a", token)
    assert refs.read("models/a") is None
