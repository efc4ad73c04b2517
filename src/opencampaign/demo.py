"""A small, realistic demo data set: folders, a few thousand recipients, services, subscriptions.

Generated from a fixed seed so every demo instance has the same rows, and loaded once (an
`xtk:option` row records it).
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from .instance import Instance
from .storage.replication import replicate

DEMO_OPTION = "OpenCampaign_DemoDataLoaded"
RECIPIENTS = 3000
FIRST_NAMES = ["Emma", "Liam", "Olivia", "Noah", "Ava", "Lucas", "Mia", "Hugo", "Chloe", "Leo", "Sofia", "Louis",
               "Alice", "Jules", "Lina", "Adam", "Zoe", "Gabriel", "Ines", "Arthur", "Nora", "Ethan", "Lea", "Paul"]
LAST_NAMES = ["Martin", "Bernard", "Dubois", "Smith", "Johnson", "Garcia", "Muller", "Rossi", "Silva", "Novak",
              "Kowalski", "Jensen", "Brown", "Lopez", "Schmidt", "Moreau", "Fischer", "Costa", "Nielsen", "Weber"]
DOMAINS = ["example.com", "mail.example.org", "demo.net", "shop.example", "inbox.test"]
CITIES = [("Paris", "75001", "FR"), ("Lyon", "69001", "FR"), ("London", "EC1A", "GB"), ("Berlin", "10115", "DE"),
          ("Madrid", "28001", "ES"), ("Milan", "20121", "IT"), ("Lisbon", "1100", "PT"), ("Boston", "02108", "US")]
FOLDERS = [  # name, label, parent name, model
    ("nmsRootRecipient", "Profiles and targets", None, "nmsRecipient"),
    ("demoCustomers", "Customers", "nmsRootRecipient", "nmsRecipient"),
    ("demoProspects", "Prospects", "nmsRootRecipient", "nmsRecipient"),
    ("nmsRootService", "Services and subscriptions", None, "nmsService"),
]
SERVICES = [  # name, label, channel (0 email, 1 SMS)
    ("newsletter", "Weekly newsletter", 0),
    ("offers", "Special offers", 0),
    ("events", "Events and webinars", 0),
    ("smsAlerts", "SMS alerts", 1),
]


def _only_columns(table: sa.Table, row: dict) -> dict:
    return {k: v for k, v in row.items() if k in table.c}


def load_demo(instance: Instance) -> bool:
    """Load the demo data set unless it is already there; returns whether it loaded."""
    storage = instance.storage
    option = storage.table("xtk:option")
    with storage.engine(storage.home("xtk:option")).connect() as conn:
        if conn.execute(sa.select(option.c.sName).where(option.c.sName == DEMO_OPTION)).first():
            return False
    rng = random.Random(20261128)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    seq = storage.sequences

    folder_ids: dict[str, int] = {}
    folders = storage.table("xtk:folder")
    with storage.write(storage.home("xtk:folder")) as conn:
        for name, label, parent, model in FOLDERS:
            existing = conn.execute(sa.select(folders.c.iFolderId).where(folders.c.sName == name)).scalar()
            if existing:
                folder_ids[name] = existing
                continue
            folder_ids[name] = seq.next_id("XtkNewId")
            full = f"/{label}/" if parent is None else f"/{_label(parent)}/{label}/"
            conn.execute(sa.insert(folders).values(_only_columns(folders, {
                "iFolderId": folder_ids[name], "sName": name, "sLabel": label, "sFullName": full,
                "iParentId": folder_ids.get(parent or "", 0), "sModel": model, "tsCreated": now, "tsLastModified": now,
            })))

    service_ids: dict[str, int] = {}
    services = storage.table("nms:service")
    with storage.write(storage.home("nms:service")) as conn:
        for name, label, channel in SERVICES:
            service_ids[name] = seq.next_id("XtkNewId")
            conn.execute(sa.insert(services).values(_only_columns(services, {
                "iServiceId": service_ids[name], "sName": name, "sLabel": label, "iType": channel,
                "iMessageType": channel, "iFolderId": folder_ids["nmsRootService"], "tsCreated": now,
                "tsLastModified": now,
            })))

    recipients = storage.table("nms:recipient")
    ids = seq.next_ids(_sequence(instance, "nms:recipient"), RECIPIENTS)
    rows, subscriptions, history = [], [], []
    subscription_table = storage.table("nms:subscription")
    history_table = storage.table("nms:subHisto")
    for i, rid in enumerate(ids):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        city, zip_code, country = rng.choice(CITIES)
        created = now - timedelta(days=rng.randint(0, 900), seconds=rng.randint(0, 86400))
        rows.append(_only_columns(recipients, {
            "iRecipientId": rid, "sFirstName": first, "sLastName": last,
            "sEmail": f"{first.lower()}.{last.lower()}{i}@{rng.choice(DOMAINS)}",
            "iGender": rng.choice([0, 1, 2]), "tsBirthDate": date(1950, 1, 1) + timedelta(days=rng.randint(0, 20000)),
            "iEmailFormat": rng.choice([0, 1, 2]), "sCity": city, "sZipCode": zip_code, "sCountryCode": country,
            "sMobilePhone": f"+3361{rng.randint(1000000, 9999999)}" if rng.random() < 0.6 else None,
            "iBlackList": 1 if rng.random() < 0.02 else 0, "iBlackListEmail": 1 if rng.random() < 0.03 else 0,
            "iFolderId": folder_ids["demoCustomers" if rng.random() < 0.7 else "demoProspects"],
            "tsCreated": created, "tsLastModified": created, "sLanguage": "en",
        }))
        for service, sid in service_ids.items():
            if rng.random() < (0.45 if service == "newsletter" else 0.2):
                when = created + timedelta(hours=rng.randint(1, 2000))
                subscriptions.append(_only_columns(subscription_table, {
                    "iRecipientId": rid, "iServiceId": sid, "tsCreated": when, "tsLastModified": when}))
                history.append(_only_columns(history_table, {
                    "iRecipientId": rid, "iServiceId": sid, "iAction": 1, "tsDate": when}))
    _assign_ids(instance, "nms:subscription", subscriptions)
    _assign_ids(instance, "nms:subHisto", history)
    with storage.write(storage.home("nms:recipient")) as conn:
        conn.execute(sa.insert(recipients), rows)
    with storage.write(storage.home("nms:subscription")) as conn:
        conn.execute(sa.insert(subscription_table), subscriptions)
    with storage.write(storage.home("nms:subHisto")) as conn:
        conn.execute(sa.insert(history_table), history)
    replicate(storage)
    with storage.write(storage.home("xtk:option")) as conn:
        conn.execute(sa.insert(option).values(_only_columns(option, {
            "sName": DEMO_OPTION, "iDataType": 6, "sStringValue": now.isoformat(),
            "iOptionId": seq.next_id("XtkNewId")})))
    return True


def _label(folder_name: str) -> str:
    return next(label for name, label, _p, _m in FOLDERS if name == folder_name)


def _assign_ids(instance: Instance, schema_id: str, rows: list[dict]) -> None:
    schema = instance.registry.get(schema_id)
    pk = schema.attribute("@id") if schema.autopk else None
    if pk is None or pk.sqlname is None:
        return
    for row, new_id in zip(rows, instance.storage.sequences.next_ids(_sequence(instance, schema_id), len(rows)), strict=True):
        row[pk.sqlname] = new_id


def _sequence(instance: Instance, schema_id: str) -> str:
    return instance.registry.get(schema_id).pk_sequence or "XtkNewId"
