"""Lists of paths or URLs, and URLs fetched from a local HTTP server: every failure is that photo's error."""

import functools
import re
import socket
import time
import types
from pathlib import Path

import local_http
import pytest
from local_http import JPEG, PNG, SLOW_S

from meterlib.errors import DataError, SettingsError
from meterlib.serve import sources
from meterlib.serve.sources import Url


@pytest.fixture(scope="module")
def server():
    with local_http.serving() as running:
        yield running


@pytest.fixture()
def url(server):
    """The address of a page on the test server (see local_http.Handler), as the Url an input list gives."""
    return lambda page: Url(server.url(page))


@pytest.fixture(autouse=True)
def online(monkeypatch):
    """The suite runs offline; these tests fetch from 127.0.0.1 unless they say otherwise."""
    monkeypatch.delenv("METERLIB_OFFLINE", raising=False)


def _fake_sleep(monkeypatch, sleep) -> None:
    """``sleep`` in place of time.sleep for sources alone (the server's threads sleep too)."""
    monkeypatch.setattr(sources, "time", types.SimpleNamespace(sleep=sleep, monotonic=time.monotonic))


def _error(outcome) -> DataError:
    assert isinstance(outcome, DataError), outcome
    return outcome


# --- fetching ------------------------------------------------------------------------------------

def test_a_photo_is_fetched_as_its_bytes(url):
    assert sources.fetch_url(url("good.jpg")) == JPEG
    assert sources.fetch_url(url("good.png")) == PNG


def test_a_404_is_an_error_naming_the_url_and_is_not_retried(server, url):
    address = url("gone.jpg")
    with pytest.raises(DataError) as raised:
        sources.fetch_url(address, retry_wait=0)
    assert (raised.value.path, raised.value.problem) == (address, "HTTP 404 Not Found")
    assert server.hits(address) == 1


def test_a_slow_server_is_given_up_after_the_timeout(url):
    started = time.monotonic()
    with pytest.raises(DataError, match=r"no answer within 0\.2 s \(2 tries\)$"):
        sources.fetch_url(url("slow"), timeout=0.2, retries=1, retry_wait=0)
    assert time.monotonic() - started < SLOW_S


def test_a_server_that_trickles_is_given_up_after_the_timeout_in_all(url):
    started = time.monotonic()
    with pytest.raises(DataError, match=r"the download did not finish within 0\.3 s$"):
        sources.fetch_url(url("trickle"), timeout=0.3, retries=0)
    assert time.monotonic() - started < 1.0  # the whole body takes 2 s


def test_a_web_page_instead_of_a_photo_is_an_error(server, url):
    address = url("page")
    with pytest.raises(DataError) as raised:
        sources.fetch_url(address)
    assert raised.value.problem == "the server sent a web page or text (text/html), not a photo"
    assert server.hits(address) == 1


@pytest.mark.parametrize("page", ["big", "big-unsized"])
def test_a_body_over_the_size_limit_is_an_error(url, page):
    assert len(sources.fetch_url(url(page), max_bytes=5000)) == 5000  # at the limit: kept
    with pytest.raises(DataError, match=r": too large \(over 4999 bytes\)$"):
        sources.fetch_url(url(page), max_bytes=4999)


def test_a_refused_connection_is_an_error_after_the_retries():
    with socket.socket() as spare:  # a port that nothing listens on
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    with pytest.raises(DataError, match=r"could not connect \(.*refused.*\) \(3 tries\)$"):
        sources.fetch_url(f"http://127.0.0.1:{port}/a.jpg", retry_wait=0)


def test_a_passing_failure_is_retried_until_it_passes(server, url):
    address = url("busy")
    assert sources.fetch_url(address, retries=2, retry_wait=0) == JPEG
    assert server.hits(address) == 3


def test_retries_wait_longer_each_time_and_then_give_up(server, url, monkeypatch):
    waits = []
    _fake_sleep(monkeypatch, waits.append)
    address = url("down")
    with pytest.raises(DataError, match=r": HTTP 503 Service Unavailable \(4 tries\)$"):
        sources.fetch_url(address, retries=3, retry_wait=0.5)
    assert server.hits(address) == 4
    assert waits == [0.5, 1.0, 2.0]


def test_the_settings_have_their_home_in_the_module_constants():
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(sources.fetch_url).parameters.items()
                if p.default is not p.empty}
    assert defaults == {"timeout": sources.TIMEOUT_S, "max_bytes": sources.MAX_BYTES, "retries": sources.RETRIES,
                        "retry_wait": sources.RETRY_WAIT_S}


@pytest.mark.parametrize(("address", "problem"), [
    ("file:///etc/hostname", "only http:// and https:// URLs are fetched"),
    ("ftp://127.0.0.1/a.jpg", "only http:// and https:// URLs are fetched"),
    ("http:///a.jpg", "not a valid URL (no host)"),
    ("http://[::1/a.jpg", "not a valid URL (Invalid IPv6 URL)"),
    ("http://127.0.0.1:port/a.jpg", "not a valid URL (nonnumeric port: 'port')"),
])
def test_an_address_that_cannot_be_fetched_is_an_error_without_retries(address, problem, monkeypatch):
    _fake_sleep(monkeypatch, lambda _: pytest.fail("retried"))
    with pytest.raises(DataError) as raised:
        sources.fetch_url(address)
    assert (raised.value.path, raised.value.problem) == (address, problem)


# --- reading a batch -----------------------------------------------------------------------------

def test_read_each_keeps_paths_and_order_and_puts_each_failure_in_place(url, tmp_path):
    photo = tmp_path / "a.jpg"
    items = [url("good.png"), photo, url("gone.jpg"), url("good.jpg"), url("page")]
    read = sources.read_each(items)
    assert read[:2] == [PNG, photo] and read[3] == JPEG
    assert _error(read[2]).path == items[2] and "404" in read[2].problem
    assert _error(read[4]).path == items[4] and "web page" in read[4].problem


def test_the_urls_of_a_batch_are_fetched_at_once(url):
    fetch = functools.partial(sources.fetch_url, timeout=5 * SLOW_S, retries=0)
    started = time.monotonic()
    assert sources.read_each([url("slow") for _ in range(4)], fetch=fetch) == [JPEG] * 4
    assert time.monotonic() - started < 2 * SLOW_S  # one after the other: 4 s


def test_offline_a_url_is_an_error_naming_it_and_nothing_is_requested(server, url, monkeypatch, tmp_path):
    monkeypatch.setenv("METERLIB_OFFLINE", "1")
    addresses = [url("good.jpg"), url("good.png")]
    read = sources.read_each([*addresses, tmp_path / "b.jpg"])
    assert [(_error(error).path, error.problem) for error in read[:2]] == [(a, sources.OFFLINE_PROBLEM)
                                                                           for a in addresses]
    assert read[2] == tmp_path / "b.jpg"
    assert [server.hits(a) for a in addresses] == [0, 0]


def test_read_chunks_gives_every_item_once_in_order_with_its_reading(url):
    items = [url("good.jpg"), Path("x.jpg"), url("gone.jpg"), Path("y.jpg"), url("good.png")]
    chunks = list(sources.read_chunks(items, size=2))
    assert [list(chunk) for chunk, _ in chunks] == [items[:2], items[2:4], items[4:]]
    read = [value for _, values in chunks for value in values]
    assert read[:2] == [JPEG, Path("x.jpg")] and isinstance(read[2], DataError) and read[3:] == [Path("y.jpg"), PNG]
    assert list(sources.read_chunks([], size=2)) == []


def test_an_unfetched_url_becomes_that_photos_error_row(url, random_checkpoint):
    from meterlib.serve import Predictor

    items = [url("good.jpg"), url("gone.jpg"), url("page"), url("good.png")]
    outcomes = Predictor.load(random_checkpoint).predict_each(sources.read_each(items), names=items)
    assert [outcome.source for outcome in outcomes] == items
    assert [outcome.ok for outcome in outcomes] == [True, False, False, True]
    assert outcomes[1].error == "HTTP 404 Not Found"
    assert outcomes[2].error == "the server sent a web page or text (text/html), not a photo"


# --- lists ---------------------------------------------------------------------------------------

@pytest.fixture()
def folder(tmp_path, monkeypatch):
    """Photos in photos/ (one in a subfolder) and lists/ beside it; the tests run from tmp_path."""
    monkeypatch.chdir(tmp_path)
    for name in ["photos/b.jpg", "photos/a.jpg", "photos/sub/c.png", "lists/near.jpg"]:
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_bytes(JPEG)
    return tmp_path


def test_a_csv_lists_its_column_in_order_with_paths_from_its_folder(folder):
    Path("lists/batch.csv").write_text(
        "id,photo,note\n"
        "1,https://example.com/m/7.jpg,first\n"
        "2,near.jpg,beside the list\n"
        "3,,no photo in this row\n"
        "4,../photos/a.jpg,\n"
        "5,  https://example.com/m/1.jpg  ,padded\n"
        f"6,{folder / 'photos/b.jpg'},absolute\n")
    inputs = sources.gather(["lists/batch.csv"], column="photo")
    assert inputs.files == [Url("https://example.com/m/7.jpg"), Path("lists/near.jpg"), Path("lists/../photos/a.jpg"),
                            Url("https://example.com/m/1.jpg"), folder / "photos/b.jpg"]
    assert [type(item) for item in inputs.files[:2]] == [Url, type(Path())]
    assert inputs.skipped == {}


def test_without_a_column_a_csv_is_read_by_its_file_path_url_or_image_column(folder):
    Path("answers.csv").write_text("file,label\nphotos/a.jpg,X\n")  # a `meterlib predict` CSV
    Path("sheet.csv").write_text("Meter,URL,Image\n7,https://example.com/7.jpg,ignored.jpg\n")
    assert sources.gather(["answers.csv"]).files == [Path("photos/a.jpg")]
    assert sources.gather(["sheet.csv"]).files == [Url("https://example.com/7.jpg")]


def test_a_missing_column_names_the_file_its_columns_and_the_likely_one(folder):
    Path("sheet.csv").write_text("meter_id,photo_url\n7,https://example.com/7.jpg\n")
    with pytest.raises(DataError) as raised:
        sources.gather(["sheet.csv"], column="photo_ulr")
    assert str(raised.value) == ("sheet.csv: no column 'photo_ulr' (did you mean 'photo_url'?); its columns are "
                                 "'meter_id', 'photo_url'")
    with pytest.raises(DataError) as raised:
        sources.gather(["sheet.csv"])
    assert str(raised.value) == ("sheet.csv: no column named file, path, url, image; its columns are 'meter_id', "
                                 "'photo_url'; name the one holding the photos with --column")


def test_a_column_without_a_csv_list_is_a_settings_error(folder):
    with pytest.raises(SettingsError, match="column 'url' given, but no CSV list"):
        sources.gather(["photos"], column="url")


def test_an_at_file_lists_one_path_or_url_a_line(folder):
    Path("lists/urls.txt").write_text("\ufeffhttp://example.com/1.jpg\n\n  near.jpg  \r\nhttp://example.com/1.jpg\n")
    assert sources.gather(["@lists/urls.txt"]).files == [Url("http://example.com/1.jpg"), Path("lists/near.jpg")]


def test_a_file_whose_name_starts_with_the_at_sign_stays_a_photo(folder):
    Path("@meter.jpg").write_bytes(JPEG)
    assert sources.gather(["@meter.jpg"]).files == [Path("@meter.jpg")]


def test_files_and_folders_come_sorted_first_then_urls_and_lists_in_the_order_given(folder):
    Path("lists/two.txt").write_text("near.jpg\n../photos/a.jpg\n")
    inputs = sources.gather(["photos/sub", "https://example.com/z.jpg", "@lists/two.txt", "photos",
                             "https://example.com/a.jpg", "photos/a.jpg"])
    assert inputs.files == [Path("photos/a.jpg"), Path("photos/b.jpg"), Path("photos/sub/c.png"),
                            Url("https://example.com/z.jpg"), Path("lists/near.jpg"), Path("lists/../photos/a.jpg"),
                            Url("https://example.com/a.jpg")]


def test_without_lists_or_urls_the_inputs_are_expand_inputs_own(folder):
    from meterlib.serve import batch

    Path("photos/notes.txt").write_text("a file named explicitly stays an input photo")
    arguments = ["photos", "photos/notes.txt", "gone.jpg"]
    assert sources.gather(arguments) == batch.expand_inputs(arguments)


@pytest.mark.parametrize(("content", "problem"), [
    (None, "list not found"),
    ("id,file\n", "lists no paths or URLs"),
    ("", "empty CSV (no header row)"),
    (b"file\n\xff\xfe.jpg\n", "list is not UTF-8 text"),
    ("file\nnowhere.jpg\nnot/here.png\n", "none of the 2 paths it lists exists (relative ones are read from the "
                                          "list's folder, lists)"),
])
def test_a_list_that_cannot_be_used_is_an_error_naming_it(folder, content, problem):
    path = Path("lists/bad.csv")
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(DataError) as raised:
        sources.gather(["photos", str(path)])
    assert (raised.value.path, raised.value.problem) == (str(path), problem)


def test_a_list_that_is_a_folder_is_an_error_naming_it(folder):
    with pytest.raises(DataError, match=re.escape("photos: cannot read the list: not a regular file (a directory)")):
        sources.gather(["@photos"])


def test_the_local_inputs_are_the_lists_and_the_paths_but_no_url(folder):
    Path("lists/l.csv").write_text("url\nhttps://example.com/1.jpg\nnear.jpg\n")
    arguments = ["@lists/l.csv", "photos/a.jpg", "https://example.com/2.jpg"]
    inputs = sources.gather(arguments)
    assert sources.local_inputs(arguments, inputs) == [Path("lists/l.csv"), Path("photos/a.jpg"),
                                                       Path("lists/near.jpg")]
