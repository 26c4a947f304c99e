"""Multistatus parsing and listing merge on their own (answers as servers send them)."""

from __future__ import annotations

import pytest

from syncd.connectors.carddav.dav import DavClient, parse_multistatus, strong_etag

FIRST = b"""<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:">
  <d:response><d:href>/dav/My%20Book/a.vcf</d:href>
    <d:propstat><d:prop><d:getetag>"1"</d:getetag></d:prop>
    <d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
  <d:response><d:href>https://dav.example.com/dav/My%20Book/b.vcf</d:href>
    <d:propstat><d:prop><d:getetag>"2"</d:getetag></d:prop>
    <d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
  <d:response><d:href>/dav/My%20Book/</d:href>
    <d:status>HTTP/1.1 507 Insufficient Storage</d:status></d:response>
  <d:sync-token>tok-1</d:sync-token>
</d:multistatus>"""

SECOND = b"""<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:">
  <d:response><d:href>/dav/My%20Book/a.vcf</d:href>
    <d:status>HTTP/1.1 404 Not Found</d:status></d:response>
  <d:response><d:href>/dav/Other/c.vcf</d:href>
    <d:propstat><d:prop><d:getetag>"3"</d:getetag></d:prop>
    <d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
  <d:sync-token>tok-2</d:sync-token>
</d:multistatus>"""


def test_truncated_listing_is_merged_with_its_continuation():
    items, token = parse_multistatus(FIRST)
    assert token == "tok-1"
    assert [i.status for i in items] == [None, None, 507]
    out: dict = {}
    DavClient._merge(out, items, "/dav/My Book")
    assert out == {"a.vcf": '"1"', "b.vcf": '"2"'}
    items, token = parse_multistatus(SECOND)
    DavClient._merge(out, items, "/dav/My Book")
    assert out == {"b.vcf": '"2"'} and token == "tok-2"  # removed; other book ignored


def test_hostile_xml_is_refused():
    bomb = b"""<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>
    <d:multistatus xmlns:d="DAV:"><d:response><d:href>&x;</d:href></d:response>
    </d:multistatus>"""
    items, _ = parse_multistatus(bomb)
    assert "root:" not in items[0].href  # entities are not resolved
    with pytest.raises(ValueError, match="not a DAV multistatus"):
        parse_multistatus(b"<html/>")
    with pytest.raises(ValueError, match="does not parse"):
        parse_multistatus(b"<d:multistatus")


def test_weak_etags_are_not_used_for_if_match():
    assert strong_etag(' "abc" ') == '"abc"'
    assert strong_etag('W/"abc"') is None and strong_etag(None) is None
