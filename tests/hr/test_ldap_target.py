"""LdapTarget against a real slapd: joiners, movers, leavers, groups, correlation, escaping."""

from __future__ import annotations

import pytest

from syncd.connectors.ldap.target import (
    LdapTargetOptions,
    dn_within,
    escape_rdn_value,
    parse_dn,
    same_dn,
)
from tests.hr.conftest import (
    BASE,
    DISABLED,
    GROUPS,
    PEOPLE,
    add_groups,
    create,
    default_options,
    delete,
    make_target,
    person,
    update,
)

pytestmark = pytest.mark.slapd


def test_create_places_entry_from_template(slapd, root_pw_file, reader):
    t = make_target(slapd, root_pw_file)
    [res] = t.apply([create("1001", person("1001", "Jane", "Doe", "Sales"))])
    assert res.ok, res.error
    e = reader.one("(uid=jane.doe)")
    assert same_dn(e.entry_dn, f"uid=jane.doe,ou=Sales,{PEOPLE}")
    assert e.employeeNumber.value == "1001"
    assert e.mail.value == "jane.doe@example.com"
    assert res.target_id == e.entryUUID.value
    assert res.detail == f"created uid=jane.doe,ou=Sales,{PEOPLE}"
    # department is template-only (not owned): no such attribute was written
    assert "department" not in {a.lower() for a in e.entry_attributes}


def test_update_writes_only_owned_attributes(slapd, root_pw_file, reader):
    t = make_target(slapd, root_pw_file)
    fields = person("1002", "Max", "Power")
    [res] = t.apply([create("1002", fields)])
    dn = reader.one("(uid=max.power)").entry_dn
    slapd.modify(
        f"dn: {dn}\nchangetype: modify\nadd: telephoneNumber\ntelephoneNumber: +1 555 0100\n"
        "-\nadd: description\ndescription: set by hand\n"
    )
    t.ops.clear()
    fields2 = dict(fields, title="Manager")
    [res2] = t.apply([update("1002", fields2, res.target_id, changed=["title"])])
    assert res2.ok, res2.error
    e = reader.one("(uid=max.power)")
    assert e.title.value == "Manager"
    assert e.telephoneNumber.value == "+1 555 0100"  # not owned: untouched
    assert e.description.value == "set by hand"
    assert t.ops["modify"] == 1
    # nothing differs any more: one search, no write
    t.ops.clear()
    [res3] = t.apply([update("1002", fields2, res.target_id)])
    assert res3.ok and t.ops["modify"] == 0 and t.ops["modify_dn"] == 0
    assert res3.detail == "already up to date"
    # an owned attribute emptied by the record is removed
    t.apply([update("1002", dict(fields2, title=None), res.target_id)])
    assert "title" not in reader.one("(uid=max.power)").entry_attributes


def test_department_change_moves_entry(slapd, root_pw_file, reader):
    t = make_target(slapd, root_pw_file)
    [res] = t.apply([create("1003", person("1003", "Ann", "Lee", "Sales"))])
    [moved] = t.apply([update("1003", person("1003", "Ann", "Lee", "R&D, Labs"), res.target_id)])
    assert moved.ok, moved.error
    assert moved.target_id == res.target_id  # the link survives the rename
    assert moved.detail.startswith(f"moved from uid=ann.lee,ou=Sales,{PEOPLE} to ")
    e = reader.one("(uid=ann.lee)")
    assert parse_dn(e.entry_dn)[1] == (("ou", "R&D, Labs"),)
    assert e.departmentNumber.value == "R&D, Labs"
    assert reader.find("(uid=ann.lee)", base=f"ou=Sales,{PEOPLE}") == []
    # the uid changes too (a rename of the RDN value)
    renamed = person("1003", "Ann", "Lee", "R&D, Labs", uid="ann.smith")
    [r2] = t.apply([update("1003", renamed, res.target_id)])
    assert r2.ok, r2.error
    e = reader.one("(employeeNumber=1003)")
    assert e.uid.values == ["ann.smith"]
    assert e.entry_dn.lower().startswith("uid=ann.smith,")


def test_leaver_disabled_then_reenabled(slapd, root_pw_file, reader):
    t = make_target(slapd, root_pw_file)
    fields = person("1004", "Bob", "Gone")
    [res] = t.apply([create("1004", fields)])
    [gone] = t.apply([delete("1004", res.target_id)])
    assert gone.ok, gone.error
    assert gone.detail.startswith("disabled")
    e = reader.one("(uid=bob.gone)")
    assert dn_within(e.entry_dn, DISABLED)
    assert e.employeeType.value == "disabled"
    # the same delete again (crash before commit): still fine, nothing more done
    t.ops.clear()
    [again] = t.apply([delete("1004", res.target_id)])
    assert again.ok and again.detail == "already disabled" and t.ops["modify"] == 0
    # back: the engine sends a create without target id (its state row was removed)
    [back] = t.apply([create("1004", fields)])
    assert back.ok, back.error
    assert back.target_id == res.target_id
    assert "re-enabled" in back.detail
    e = reader.one("(uid=bob.gone)")
    assert same_dn(e.entry_dn, f"uid=bob.gone,ou=Sales,{PEOPLE}")
    assert "employeeType" not in e.entry_attributes


def test_enabled_false_creates_disabled_and_end_date_disables(slapd, root_pw_file, reader):
    t = make_target(slapd, root_pw_file)
    future = person("1005", "Fay", "Future", enabled=False)
    [res] = t.apply([create("1005", future)])
    assert res.ok and res.detail.startswith("created disabled uid=fay.future,ou=disabled")
    e = reader.one("(uid=fay.future)")
    assert dn_within(e.entry_dn, DISABLED) and e.employeeType.value == "disabled"
    [started] = t.apply([update("1005", dict(future, enabled=True), res.target_id)])
    assert "re-enabled" in started.detail
    assert not dn_within(reader.one("(uid=fay.future)").entry_dn, DISABLED)
    [ended] = t.apply([update("1005", dict(future, enabled=False), res.target_id)])
    assert ended.ok and "disabled" in ended.detail
    assert reader.one("(uid=fay.future)").employeeType.value == "disabled"


def test_disable_by_attribute_only_and_hard_delete(slapd, root_pw_file, reader):
    t = make_target(slapd, root_pw_file, disabled_ou=None)
    [res] = t.apply([create("1006", person("1006", "Al", "Attr"))])
    [gone] = t.apply([delete("1006", res.target_id)])
    assert gone.ok and gone.detail == "disabled"
    e = reader.one("(uid=al.attr)")
    assert dn_within(e.entry_dn, PEOPLE) and e.employeeType.value == "disabled"

    hard = make_target(slapd, root_pw_file, on_delete="delete")
    [res2] = hard.apply([create("1007", person("1007", "Del", "Eted"))])
    [gone2] = hard.apply([delete("1007", res2.target_id)])
    assert gone2.ok and gone2.detail.startswith("deleted")
    assert reader.find("(uid=del.eted)") == []
    [again] = hard.apply([delete("1007", res2.target_id)])
    assert again.ok and again.detail == "already gone"


def test_managed_groups_only(slapd, root_pw_file, reader):
    sales, eng = f"cn=sales,{GROUPS}", f"cn=eng,{GROUPS}"
    slapd.add("dn: ou=other,dc=example,dc=com\nobjectClass: organizationalUnit\nou: other\n")
    vpn = "cn=vpn,ou=other,dc=example,dc=com"
    add_groups(slapd, sales, eng, vpn)
    t = make_target(slapd, root_pw_file)
    fields = person("1008", "Gus", "Group", groups=["sales", vpn])
    [res] = t.apply([create("1008", fields)])
    assert res.ok, res.error
    dn = reader.one("(uid=gus.group)").entry_dn.lower()
    assert dn in reader.members(sales)
    assert dn not in reader.members(vpn)  # not managed: never written
    assert "not managed, ignored" in res.detail
    # someone adds them to the unmanaged group by hand; then the department changes
    slapd.modify(f"dn: {vpn}\nchangetype: modify\nadd: member\nmember: {dn}\n")
    moved = dict(fields, groups=[eng], department="Eng", departmentNumber="Eng")
    [res2] = t.apply([update("1008", moved, res.target_id, changed=["groups", "department"])])
    assert res2.ok, res2.error
    new_dn = reader.one("(uid=gus.group)").entry_dn.lower()
    assert new_dn in reader.members(eng)
    assert new_dn not in reader.members(sales) and dn not in reader.members(sales)
    assert dn in reader.members(vpn)  # the hand-made membership is not ours to touch
    assert "added to" in res2.detail and "removed from" in res2.detail
    # an unknown managed group is a warning on that person, not a failed update
    [res3] = t.apply(
        [update("1008", dict(moved, groups=["eng", "nosuch"]), res.target_id, ["groups"])]
    )
    assert res3.ok, res3.error
    assert f"warning: group cn=nosuch,{GROUPS} does not exist" in res3.detail


def test_correlation_rules(slapd, root_pw_file, reader):
    slapd.add(
        f"""dn: uid=old1,{PEOPLE}
objectClass: inetOrgPerson
uid: old1
cn: Old One
sn: One
employeeNumber: 2001
mail: one@example.com

dn: uid=old2,{PEOPLE}
objectClass: inetOrgPerson
uid: old2
cn: Old Two
sn: Two
mail: two@example.com

dn: uid=twin1,{PEOPLE}
objectClass: inetOrgPerson
uid: twin1
cn: Twin
sn: Twin
mail: twin@example.com

dn: uid=twin2,{PEOPLE}
objectClass: inetOrgPerson
uid: twin2
cn: Twin
sn: Twin
mail: twin@example.com

dn: uid=taken,{PEOPLE}
objectClass: inetOrgPerson
uid: taken
cn: Taken
sn: Taken
employeeNumber: 9999
mail: taken@example.com
"""
    )
    t = make_target(slapd, root_pw_file)
    uuid = {u: reader.one(f"(uid={u})").entryUUID.value for u in ("old1", "old2", "twin1", "twin2")}
    # rule 1 (employeeNumber) matches exactly one
    assert t.correlate({"employeeNumber": "2001", "mail": "x@example.com"}) == [uuid["old1"]]
    # rule 1 finds nothing, rule 2 (mail) matches one
    assert t.correlate({"employeeNumber": "2002", "mail": "two@example.com"}) == [uuid["old2"]]
    # several: all returned (the engine reports the ambiguity), DNs known for messages
    both = t.correlate({"employeeNumber": "2003", "mail": "twin@example.com"})
    assert sorted(both) == sorted([uuid["twin1"], uuid["twin2"]])
    assert {t.dn_of(i).split(",")[0] for i in both} == {"uid=twin1", "uid=twin2"}
    # none at all
    assert t.correlate({"employeeNumber": "2004", "mail": "nobody@example.com"}) == []
    # an entry that carries someone else's employee number is not a match by mail
    assert t.correlate({"employeeNumber": "2005", "mail": "taken@example.com"}) == []
    # directory values are data: filter metacharacters match literally, not everything
    assert t.correlate({"employeeNumber": "*", "mail": "*)(uid=*"}) == []
    # linking: an update carrying the correlated id writes the key there
    fields = person("2002", "Old", "Two", uid="old2", mail="two@example.com")
    [res] = t.apply([update("2002", fields, uuid["old2"])])
    assert res.ok, res.error
    assert res.target_id == uuid["old2"]
    assert reader.one("(uid=old2)").employeeNumber.value == "2002"
    assert res.detail.startswith("linked uid=old2,")


@pytest.mark.parametrize(
    "name",
    [
        "Smith, John",
        "a+b=c",
        '"Quoted" <x>; y',
        "#hash",
        " lead",
        "trail ",
        "Zoë Ångström 東京",
        "back\\slash",
    ],
)
def test_hostile_names_are_escaped(slapd, root_pw_file, reader, name):
    t = make_target(
        slapd,
        root_pw_file,
        dn_template="cn={cn}+uid={uid},ou={department},ou=people,dc=example,dc=com",
    )
    fields = person("3001", "X", "Y", department=name, uid="u3001", cn=name)
    [res] = t.apply([create("3001", fields)])
    assert res.ok, res.error
    e = reader.one("(uid=u3001)")
    rdns = parse_dn(e.entry_dn)
    assert sorted(rdns[0]) == [("cn", name), ("uid", "u3001")]
    assert rdns[1] == (("ou", name),)
    assert dn_within(e.entry_dn, PEOPLE)
    # applying the same record again finds it in place: no move, no duplicate
    t.ops.clear()
    [again] = t.apply([update("3001", fields, res.target_id)])
    assert again.ok and t.ops["modify_dn"] == 0 and t.ops["add"] == 0


def test_escape_rdn_value_rules():
    assert escape_rdn_value("a,b") == "a\\,b"
    assert escape_rdn_value(" x ") == "\\ x\\ "
    assert escape_rdn_value(" ") == "\\ "
    assert escape_rdn_value("#1") == "\\#1"
    assert escape_rdn_value("a\x00b") == "a\\00b"
    with pytest.raises(ValueError):
        escape_rdn_value("")


def test_scope_is_respected(slapd, root_pw_file, reader):
    slapd.add(
        """dn: ou=elsewhere,dc=example,dc=com
objectClass: organizationalUnit
ou: elsewhere

dn: uid=outside,ou=elsewhere,dc=example,dc=com
objectClass: inetOrgPerson
uid: outside
cn: Outside
sn: Outside
employeeNumber: 4001
mail: same@example.com
"""
    )
    t = make_target(slapd, root_pw_file)
    # not found by correlation nor by key: outside the job's base
    assert t.correlate({"employeeNumber": "4001", "mail": "same@example.com"}) == []
    [res] = t.apply([create("4001", person("4001", "In", "Side", mail="same@example.com"))])
    assert res.ok, res.error
    out = reader.one("(uid=outside)")
    assert out.cn.value == "Outside" and "title" not in out.entry_attributes
    # a template escaping the base is refused at config time
    with pytest.raises(ValueError, match="under base"):
        LdapTargetOptions.model_validate(
            default_options(dn_template="uid={uid},ou=elsewhere,dc=example,dc=com")
        )


def test_unlinked_entry_at_target_dn_is_left_alone(slapd, root_pw_file, reader):
    slapd.add(
        f"""dn: ou=Sales,{PEOPLE}
objectClass: organizationalUnit
ou: Sales

dn: uid=kim.park,ou=Sales,{PEOPLE}
objectClass: inetOrgPerson
uid: kim.park
cn: Someone Else
sn: Else
"""
    )
    t = make_target(slapd, root_pw_file)
    [res] = t.apply([create("5001", person("5001", "Kim", "Park"))])
    assert not res.ok and "not linked" in res.error
    e = reader.one("(uid=kim.park)")
    assert e.cn.value == "Someone Else" and "employeeNumber" not in e.entry_attributes


def test_manager_reference_resolved_within_batch(slapd, root_pw_file, reader):
    t = make_target(
        slapd,
        root_pw_file,
        owned_attributes=["uid", "cn", "sn", "manager"],
        references={"manager": "employeeNumber"},
    )
    report = person("6002", "Rae", "Report", manager="6001")
    boss = person("6001", "Bo", "Boss")
    results = t.apply([create("6002", report), create("6001", boss)])
    assert all(r.ok for r in results), [r.error for r in results]
    boss_dn = reader.one("(uid=bo.boss)").entry_dn
    assert same_dn(reader.one("(uid=rae.report)").manager.value, boss_dn)
    [missing] = t.apply([update("6002", dict(report, manager="6999"), results[0].target_id)])
    assert not missing.ok and "6999" in missing.error


def test_idempotent_create_after_lost_state(slapd, root_pw_file, reader):
    t = make_target(slapd, root_pw_file)
    fields = person("7001", "Ida", "Empotent")
    [a] = t.apply([create("7001", fields)])
    [b] = t.apply([create("7001", dict(fields, title="Boss"))])
    assert a.ok and b.ok and a.target_id == b.target_id
    assert len(reader.find("(employeeNumber=7001)")) == 1
    assert reader.one("(employeeNumber=7001)").title.value == "Boss"


def test_big_batch_reads_group_members_once(slapd, root_pw_file, reader):
    sales, eng = f"cn=sales,{GROUPS}", f"cn=eng,{GROUPS}"
    add_groups(slapd, sales, eng)
    t = make_target(slapd, root_pw_file)
    people = {
        f"8{i:03d}": person(f"8{i:03d}", f"P{i}", "Bulk", groups=["sales"]) for i in range(60)
    }
    results = t.apply([create(k, f) for k, f in people.items()])
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert len(reader.members(sales)) == 61  # + the placeholder member
    ids = {r.action.key: r.target_id for r in results}
    t2 = make_target(slapd, root_pw_file)  # a new run: the cache is filled from the server
    moved = {
        k: dict(f, department="Eng", departmentNumber="Eng", groups=["eng"])
        for k, f in people.items()
    }
    results = t2.apply([update(k, f, ids[k], ["department", "groups"]) for k, f in moved.items()])
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert reader.members(sales) == ["cn=nobody,dc=example,dc=com"]
    eng_members = set(reader.members(eng))
    assert len(eng_members) == 61
    assert all(
        m.endswith(f",ou=eng,{PEOPLE}") for m in eng_members - {"cn=nobody,dc=example,dc=com"}
    )
    # one id search per entry and one read of the groups, not a group search per entry
    assert t2.ops["search"] <= 60 + 5, t2.ops
    # each move: modrdn, then one modify per group (old DN out of sales, new DN into eng)
    assert t2.ops["modify_dn"] == 60 and t2.ops["modify"] == 60 * 3


def test_dn_parsing_and_option_checks():
    assert parse_dn('cn="Smith, J"+uid=js,ou=A\\2cB , dc=x') == [
        (("cn", "Smith, J"), ("uid", "js")),
        (("ou", "A,B"),),
        (("dc", "x"),),
    ]
    assert parse_dn("cn=\\C3\\A9t\\C3\\A9,dc=x")[0] == (("cn", "été"),)
    assert same_dn("CN=A B,OU=X,DC=x", "cn=a b, ou=x,dc=X")
    assert not same_dn("cn=a,dc=x", "cn=a\\ ,dc=x")  # an escaped trailing space counts
    assert dn_within("uid=a,ou=people,dc=x", "dc=x") and not dn_within("dc=x", "ou=people,dc=x")
    with pytest.raises(ValueError, match="disabled_ou"):
        LdapTargetOptions.model_validate(default_options(on_delete="move", disabled_ou=None))
    with pytest.raises(ValueError, match="disabled_attributes"):
        LdapTargetOptions.model_validate(default_options(disabled_ou=None, disabled_attributes={}))
    with pytest.raises(ValueError, match="first RDN"):
        LdapTargetOptions.model_validate(
            default_options(dn_template="uid=x,ou=people,dc=example,dc=com")
        )
    ad = LdapTargetOptions.model_validate(
        default_options(directory="ad", disabled_ou=None, disabled_attributes={})
    )
    assert ad.key_attr == "employeeID" and ad.id_attr == "objectGUID"


def test_lost_connection_is_a_target_error(slapd, root_pw_file):
    from syncd.errors import TargetError

    t = make_target(slapd, root_pw_file)
    [ok] = t.apply([create("9001", person("9001", "Lo", "St"))])
    assert ok.ok
    slapd.stop()
    with pytest.raises(TargetError, match="connection lost"):
        t.apply([create("9002", person("9002", "Ne", "Ver"))])
    t.close()
    t.close()  # safe twice


def test_disabled_groups_remove(slapd, root_pw_file, reader):
    sales = f"cn=sales,{GROUPS}"
    add_groups(slapd, sales)
    t = make_target(slapd, root_pw_file, disabled_groups="remove")
    fields = person("9101", "Rem", "Oved", groups=["sales"])
    [res] = t.apply([create("9101", fields)])
    assert res.ok, res.error
    assert reader.one("(uid=rem.oved)").entry_dn.lower() in reader.members(sales)
    [gone] = t.apply([delete("9101", res.target_id)])
    assert gone.ok and gone.detail.startswith("disabled") and "removed from" in gone.detail
    assert reader.members(sales) == ["cn=nobody,dc=example,dc=com"]  # no stale DN either
    [back] = t.apply([create("9101", fields)])
    assert back.ok and "re-enabled" in back.detail
    assert reader.one("(uid=rem.oved)").entry_dn.lower() in reader.members(sales)
    # an end date (enabled: false) removes them too; a future joiner gets no groups
    [ended] = t.apply([update("9101", dict(fields, enabled=False), res.target_id, ["enabled"])])
    assert ended.ok and "removed from" in ended.detail
    [future] = t.apply(
        [create("9102", person("9102", "Fu", "Ture", groups=["sales"], enabled=False))]
    )
    assert future.ok and reader.members(sales) == ["cn=nobody,dc=example,dc=com"]


def test_missing_group_on_create_is_a_warning_and_the_account_exists(slapd, root_pw_file, reader):
    add_groups(slapd, f"cn=staff,{GROUPS}")
    t = make_target(slapd, root_pw_file)
    [res] = t.apply([create("1301", person("1301", "Nia", "New", groups=["staff", "nosuch"]))])
    assert res.ok and res.target_id, res.error
    assert res.detail.startswith("created uid=nia.new")
    assert f"warning: group cn=nosuch,{GROUPS} does not exist" in res.detail
    dn = reader.one("(uid=nia.new)").entry_dn.lower()
    assert dn in reader.members(f"cn=staff,{GROUPS}")


def test_plan_warns_of_a_missing_group_as_apply_will(slapd, root_pw_file, reader):
    """The plan (LdapTarget.current) says what apply will report: the person is created,
    the missing group is a warning, the existing group gets the member."""
    add_groups(slapd, f"cn=staff,{GROUPS}")
    t = make_target(slapd, root_pw_file)
    actions = [
        create("1311", person("1311", "Ola", "One", groups=["staff", "nosuch"])),
        create("1312", person("1312", "Pia", "Two", groups=["nosuch"])),
    ]
    first, second = t.current(actions)
    assert f"warning: group cn=nosuch,{GROUPS} does not exist" in first.notes
    assert f"warning: group cn=nosuch,{GROUPS} does not exist" in second.notes
    groups = {c.name: c for c in first.changes}["groups"]
    assert [g.lower() for g in groups.new] == [f"cn=staff,{GROUPS}".lower()]
    assert "groups" not in {c.name for c in second.changes}
    assert reader.find("(employeeNumber=1311)") == []  # a plan writes nothing


def test_unique_login_gets_a_number_when_another_person_has_it(slapd, root_pw_file, reader):
    # Someone not managed by this job (no employeeNumber, another OU) already has jdoe.
    slapd.add(
        "dn: ou=staff,dc=example,dc=com\nobjectClass: organizationalUnit\nou: staff\n\n"
        "dn: uid=john.doe,ou=staff,dc=example,dc=com\nobjectClass: inetOrgPerson\n"
        "uid: john.doe\ncn: John Doe\nsn: Doe\n"
    )
    t = make_target(slapd, root_pw_file, unique={"uid": "uid"}, unique_base=BASE)
    first = person("1401", "John", "Doe")
    [a] = t.apply([create("1401", first)])
    assert a.ok, a.error
    assert reader.one("(employeeNumber=1401)").entry_dn == f"uid=john.doe2,ou=Sales,{PEOPLE}"
    assert "uid john.doe is taken: john.doe2" in a.detail
    [b] = t.apply([create("1402", person("1402", "John", "Doe"))])
    assert b.ok, b.error
    assert str(reader.one("(employeeNumber=1402)")["uid"]) == "john.doe3"
    # Stable: the next runs map john.doe again; each entry keeps the login it got.
    again = t.apply(
        [
            update("1401", dict(first, title="Boss"), a.target_id, ["title"]),
            update("1402", person("1402", "John", "Doe"), b.target_id),
        ]
    )
    assert all(r.ok for r in again), [r.error for r in again]
    assert str(reader.one("(employeeNumber=1401)")["uid"]) == "john.doe2"
    assert str(reader.one("(employeeNumber=1401)")["title"]) == "Boss"
    assert str(reader.one("(employeeNumber=1402)")["uid"]) == "john.doe3"
    assert "already up to date" in again[1].detail
    # The other person's entry was never touched.
    assert str(reader.one("(uid=john.doe)")["cn"]) == "John Doe"


def test_plan_shows_the_numbered_login_it_would_assign(slapd, root_pw_file, reader):
    """syncd plan (LdapTarget.current) searches the directory the way apply does."""
    slapd.add(
        "dn: ou=staff,dc=example,dc=com\nobjectClass: organizationalUnit\nou: staff\n\n"
        "dn: uid=ann.lee,ou=staff,dc=example,dc=com\nobjectClass: inetOrgPerson\n"
        "uid: ann.lee\ncn: Ann Lee\nsn: Lee\n"
    )
    t = make_target(slapd, root_pw_file, unique={"uid": "uid"}, unique_base=BASE)
    [cur] = t.current([create("1501", person("1501", "Ann", "Lee"))])
    assert cur.new_dn == f"uid=ann.lee2,ou=Sales,{PEOPLE}"
    assert "uid ann.lee is taken: ann.lee2" in cur.notes
    assert reader.find("(employeeNumber=1501)") == []  # a plan writes nothing
