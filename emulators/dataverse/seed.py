"""Realistic rows for tests and demos: Faker for small counts, a fast table-driven generator for large ones
(a million leads in seconds). Rows go straight into the store, each with its own version, as if created
through the API by `owner_id`."""

from __future__ import annotations

import gc
import random
import uuid
from collections.abc import Callable
from typing import Any

from emulators.dataverse.schema import ACCESS_TEAM, Table
from emulators.dataverse.store import Store
from emulators.dataverse.writes import set_owning_columns

Row = dict[str, Any]
FAKER_LIMIT = 1000
TEMPLATES = 4096
# A column that stays unique per generated row (e-mail addresses, numbers), so lookups by it behave.
UNIQUE_COLUMNS = {
    "lead": "emailaddress1",
    "contact": "emailaddress1",
    "systemuser": "domainname",
    "account": "accountnumber",
    "new_product": "new_sku",
}

_FIRST = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Christopher",
    "Lisa",
    "Daniel",
    "Nancy",
    "Matthew",
    "Betty",
    "Anthony",
    "Sandra",
    "Mark",
    "Ashley",
    "Donald",
    "Kimberly",
    "Steven",
    "Emily",
    "Paul",
    "Donna",
    "Andrew",
    "Michelle",
    "Joshua",
    "Carol",
    "Kenneth",
    "Amanda",
    "Kevin",
    "Melissa",
    "Brian",
    "Deborah",
    "George",
    "Stephanie",
    "Timothy",
    "Rebecca",
    "Ronald",
    "Sharon",
    "Jason",
    "Laura",
    "Edward",
    "Cynthia",
    "Jeffrey",
    "Dorothy",
    "Ryan",
    "Amy",
    "Jacob",
    "Kathleen",
    "Gary",
    "Angela",
    "Nicholas",
    "Shirley",
    "Eric",
    "Emma",
    "Jonathan",
    "Brenda",
    "Stephen",
    "Pamela",
    "Larry",
    "Nicole",
    "Justin",
    "Anna",
    "Scott",
    "Samantha",
    "Brandon",
    "Katherine",
    "Benjamin",
    "Christine",
    "Samuel",
    "Debra",
    "Gregory",
    "Rachel",
    "Alexander",
    "Carolyn",
    "Patrick",
    "Janet",
    "Frank",
    "Maria",
    "Raymond",
    "Olivia",
    "Jack",
    "Heather",
    "Dennis",
    "Helen",
    "Jerry",
    "Catherine",
    "Tyler",
    "Diane",
]
_LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Gomez",
    "Phillips",
    "Evans",
    "Turner",
    "Diaz",
    "Parker",
    "Cruz",
    "Edwards",
    "Collins",
    "Reyes",
    "Stewart",
    "Morris",
    "Morales",
    "Murphy",
    "Cook",
    "Rogers",
    "Gutierrez",
    "Ortiz",
    "Morgan",
    "Cooper",
    "Peterson",
    "Bailey",
    "Reed",
    "Kelly",
    "Howard",
    "Ramos",
    "Kim",
    "Cox",
    "Ward",
    "Richardson",
    "Watson",
    "Brooks",
    "Chavez",
    "Wood",
    "James",
    "Bennett",
    "Gray",
    "Mendoza",
    "Ruiz",
    "Hughes",
    "Price",
    "Alvarez",
    "Castillo",
    "Sanders",
    "Patel",
    "Myers",
    "Long",
    "Ross",
    "Foster",
    "Jimenez",
    "O'Brien",
]
_COMPANY = (
    "Contoso",
    "Fabrikam",
    "Northwind Traders",
    "Adventure Works",
    "Tailspin Toys",
    "Wingtip Toys",
    "Litware",
    "Proseware",
    "Woodgrove Bank",
    "Fourth Coffee",
    "Alpine Ski House",
    "Humongous Insurance",
    "Lucerne Publishing",
    "Margie's Travel",
    "Coho Winery",
    "Blue Yonder Airlines",
    "Trey Research",
    "Wide World Importers",
    "Graphic Design Institute",
    "Southridge Video",
    "City Power & Light",
    "Consolidated Messenger",
    "Relecloud",
    "VanArsdel",
    "Bellows College",
    "Best For You Organics",
)
_TITLES = (
    "Marketing Manager",
    "VP Sales",
    "CTO",
    "Purchasing Agent",
    "Operations Director",
    "IT Manager",
    "CEO",
    "Business Analyst",
    "Procurement Lead",
    "Head of Growth",
)
_CITIES = (
    ("Seattle", "WA", "98101"),
    ("Redmond", "WA", "98052"),
    ("Austin", "TX", "73301"),
    ("Boston", "MA", "02108"),
    ("Chicago", "IL", "60601"),
    ("Denver", "CO", "80202"),
    ("Atlanta", "GA", "30301"),
    ("Miami", "FL", "33101"),
)
_FIRST_LOWER = [name.lower() for name in _FIRST]
_LAST_LOWER = [name.lower().replace("'", "") for name in _LAST]
_DOMAINS = ("example.com", "example.org", "example.net", "contoso.example", "fabrikam.example")


_TEAM_NAMES = ("Sales", "Marketing", "Inside Sales", "Field Sales", "Partners")
NON_INTERACTIVE = 4  # systemuser.accessmode of application users


def seedable_owner(table: str, row: Row) -> bool:
    """A user or team seeded rows may be owned by: an enabled interactive user, or a team other than an access
    team (which cannot own records)."""
    if table == "team":
        return row.get("teamtype") != ACCESS_TEAM
    return not row.get("isdisabled") and row.get("accessmode") != NON_INTERACTIVE and not row.get("applicationid")


def _sync_flag(i: int) -> bool | None:
    # Mostly opted in; some never set (null: the column was added after they existed); a few opted out.
    mod = i % 20
    return None if mod == 0 else mod != 1


class Seeder:
    def __init__(self, store: Store, now: str, owner_id: str) -> None:
        self.store = store
        self.now = now
        self.owner_id = owner_id
        self._faker: Any = None
        self._admins: list[str] | None = None

    def faker(self) -> Any:
        if self._faker is None:
            from faker import Faker

            self._faker = Faker("en_US")
            self._faker.seed_instance(random.randrange(1 << 30))
        return self._faker

    def seed(
        self,
        logical_name: str,
        count: int,
        overrides: dict[str, Any] | None = None,
        *,
        use_faker: bool | None = None,
        refs: dict[str, str | list[str]] | None = None,
    ) -> list[str]:
        """`refs` points lookups at rows already stored: {"parentcustomerid": "account"} gives row i the i-th
        account (round robin); {"ownerid": ["systemuser", "team"]} spreads ownership over the users and teams that
        can own records (enabled interactive users, owner and Entra group teams)."""
        builders: dict[str, Callable[[int, bool], Row]] = {
            "lead": self._lead,
            "contact": self._contact,
            "account": self._account,
            "opportunity": self._opportunity,
            "new_product": self._product,
            "systemuser": self._user,
            "team": self._team,
        }
        if logical_name not in builders:
            raise ValueError(f"seeding is not supported for table '{logical_name}'")
        faker = count <= FAKER_LIMIT if use_faker is None else use_faker
        build = builders[logical_name]
        table = self.store[logical_name].table
        pk = table.primary_id
        targets = {name: self._targets(table, name, wanted) for name, wanted in (refs or {}).items()}
        base = self._base(table.logical_name)
        new_id = self.store.new_id
        collect = gc.isenabled()
        gc.disable()  # a million new dicts would otherwise trigger many full collections
        try:
            if faker:
                rows = []
                for i in range(count):
                    row = base.copy()
                    row.update(build(i, True))
                    if overrides:
                        row.update(overrides)
                    row[pk] = new_id()
                    rows.append(row)
            else:
                rows = self._fast_rows(logical_name, build, base, count, overrides)
            for name, candidates in targets.items():
                attribute, size = f"_{name}_value", len(candidates)
                for i, row in enumerate(rows):
                    row[attribute], row["~" + name] = candidates[i % size]
            if "ownerid" in targets:
                for row in rows:
                    set_owning_columns(row)
            self.store.bulk_load(logical_name, rows)
        finally:
            if collect:
                gc.enable()
        return [row[pk] for row in rows]

    def _targets(self, table: Table, name: str, wanted: str | list[str]) -> list[tuple[str, str]]:
        """(id, table) of every stored row a seeded lookup may point at, in primary-key order per table."""
        column = table.columns.get(name)
        if column is None or not column.is_lookup or column.read_only:
            raise ValueError(f"'{name}' is not a lookup column of {table.logical_name} that a seed can set")
        tables = [wanted] if isinstance(wanted, str) else list(wanted)
        candidates: list[tuple[str, str]] = []
        for target in tables:
            if target not in column.targets:
                raise ValueError(
                    f"{table.logical_name}.{name} cannot point at '{target}' (it points at {', '.join(column.targets)})"
                )
            rows = self.store[target].rows
            for record_id in self.store[target].order:
                if column.type != "Owner" or seedable_owner(target, rows[record_id]):
                    candidates.append((record_id, target))
        if not candidates:
            raise ValueError(f"no {' or '.join(tables)} rows to point {table.logical_name}.{name} at: seed them first")
        return candidates

    def _fast_rows(
        self,
        logical_name: str,
        build: Callable[[int, bool], Row],
        base: Row,
        count: int,
        overrides: dict[str, Any] | None,
    ) -> list[Row]:
        """Copies of a few thousand distinct templates, each made unique by its id and its unique columns."""
        pk = self.store[logical_name].table.primary_id
        templates = []
        for j in range(min(count, TEMPLATES)):
            template = base.copy()
            template.update(build(j, False))
            if overrides:
                template.update(overrides)
            templates.append(template)
        new_id = self.store.new_id
        rows = []
        size = len(templates)
        unique = UNIQUE_COLUMNS.get(logical_name)
        if unique is None or (overrides and unique in overrides):
            for i in range(count):
                row = templates[i % size].copy()
                row[pk] = new_id()
                rows.append(row)
            return rows
        parts = []
        for template in templates:
            value = str(template[unique])
            head, sep, tail = value.partition("@")
            parts.append((head.rsplit(".", 1)[0] + ".", sep + tail) if sep else (value.rstrip("0123456789"), ""))
        for i in range(count):
            j = i % size
            row = templates[j].copy()
            prefix, suffix = parts[j]
            row[unique] = f"{prefix}{i}{suffix}"
            row[pk] = new_id()
            rows.append(row)
        return rows

    def _base(self, logical_name: str) -> Row:
        table = self.store[logical_name].table
        # Only non-null values: a missing key reads as null, and smaller rows copy faster.
        row: Row = {c.attribute: c.default for c in table.columns.values() if c.default is not None}
        row.update({"createdon": self.now, "modifiedon": self.now})
        for column in ("createdby", "modifiedby", "ownerid"):
            if column in table.columns:
                row[f"_{column}_value"] = self.owner_id
                row["~" + column] = "systemuser"
        if "ownerid" in table.columns:
            set_owning_columns(row)
        if "statecode" in table.columns:
            row["statecode"], row["statuscode"] = 0, 1
        return row

    def _person(self, i: int, faker: bool) -> Row:
        if faker:
            fake = self.faker()
            first, last = fake.first_name(), fake.last_name()
            city = (fake.city(), fake.state_abbr(), fake.postcode())
            email = f"{first}.{last}.{i}@{fake.free_email_domain()}".lower().replace("'", "")
            phone = fake.numerify("+1 ###-###-####")
            street = fake.street_address()
        else:
            first, last = _FIRST[i % len(_FIRST)], _LAST[(i // len(_FIRST)) % len(_LAST)]
            city = _CITIES[i % len(_CITIES)]
            email = (
                f"{_FIRST_LOWER[i % len(_FIRST)]}.{_LAST_LOWER[(i // len(_FIRST)) % len(_LAST)]}.{i}@{_DOMAINS[i % 5]}"
            )
            phone = f"+1 555-{(i // 10000) % 1000:03d}-{i % 10000:04d}"
            street = f"{100 + i % 9000} Main St"
        return {
            "firstname": first,
            "lastname": last,
            "fullname": f"{first} {last}",
            "emailaddress1": email,
            "telephone1": phone,
            "jobtitle": _TITLES[i % len(_TITLES)],
            "address1_line1": street,
            "address1_city": city[0],
            "address1_stateorprovince": city[1],
            "address1_postalcode": city[2],
            "address1_country": "United States",
        }

    def _company(self, i: int, faker: bool) -> str:
        if faker:
            return str(self.faker().company())[:100]
        return f"{_COMPANY[i % len(_COMPANY)]} {i // len(_COMPANY) + 1}"

    def _lead(self, i: int, faker: bool) -> Row:
        row = self._person(i, faker)
        row.update(
            subject=f"Interested in {('licenses', 'services', 'a demo', 'pricing')[i % 4]}",
            companyname=self._company(i, faker),
            leadsourcecode=1 + i % 10,
            industrycode=1 + i % 33,
            numberofemployees=10 * (1 + i % 500),
            new_synctomkto=_sync_flag(i),
        )
        return row

    def _contact(self, i: int, faker: bool) -> Row:
        row = self._person(i, faker)
        row.update(preferredcontactmethodcode=1 + i % 5, new_synctomkto=_sync_flag(i))
        return row

    def _account(self, i: int, faker: bool) -> Row:
        city = _CITIES[i % len(_CITIES)]
        return {
            "name": self._company(i, faker),
            "accountnumber": f"AC{i:08d}",
            "telephone1": f"+1 555-{(i // 10000) % 1000:03d}-{i % 10000:04d}",
            "websiteurl": f"https://www.company{i}.example",
            "address1_city": city[0],
            "address1_stateorprovince": city[1],
            "address1_postalcode": city[2],
            "industrycode": 1 + i % 33,
            "numberofemployees": 10 * (1 + i % 900),
            "revenue": float(100000 * (1 + i % 250)),
            "accountcategorycode": 1 + i % 2,
            "new_synctomkto": _sync_flag(i),
        }

    def _opportunity(self, i: int, faker: bool) -> Row:
        accounts = self.store["account"].order
        row: Row = {
            "name": f"{('Renewal', 'Upsell', 'New business', 'Pilot')[i % 4]} {i + 1}",
            "estimatedvalue": float(5000 * (1 + i % 40)),
            "closeprobability": (i * 7) % 100,
            "salesstagecode": i % 4,
            "opportunityratingcode": 1 + i % 3,
            "new_synctomkto": _sync_flag(i),
        }
        if accounts:
            account_id = accounts[i % len(accounts)]
            row.update(
                {
                    "_customerid_value": account_id,
                    "~customerid": "account",
                    "_parentaccountid_value": account_id,
                    "~parentaccountid": "account",
                }
            )
        return row

    def _product(self, i: int, faker: bool) -> Row:
        accounts = self.store["account"].order
        row: Row = {
            "new_name": f"{('Widget', 'Gadget', 'Service plan', 'License')[i % 4]} {i + 1}",
            "new_sku": f"SKU-{i:07d}",
            "new_price": float(10 * (1 + i % 100)),
            "new_category": 100000000 + i % 3,
        }
        if accounts:
            row.update({"_new_accountid_value": accounts[i % len(accounts)], "~new_accountid": "account"})
        return row

    def _user(self, i: int, faker: bool) -> Row:
        """Of every 10 users: 8 interactive and enabled, 1 an application user (i % 10 == 8), 1 disabled (== 9)."""
        person = self._person(i, faker)
        domain = f"{person['firstname']}.{person['lastname']}{i}@contoso.example".lower().replace("'", "")
        row: Row = {
            "firstname": person["firstname"],
            "lastname": person["lastname"],
            "fullname": person["fullname"],
            "domainname": domain,
            "internalemailaddress": domain,
            "title": _TITLES[i % len(_TITLES)],
            "jobtitle": _TITLES[i % len(_TITLES)],
            "mobilephone": person["telephone1"],
            "address1_telephone1": person["telephone1"],
            "isdisabled": i % 10 == 9,
            "accessmode": 0,
        }
        if i % 10 == 8:
            row.update(
                firstname="#",
                lastname=f"Integration app {i + 1}",
                fullname=f"# Integration app {i + 1}",
                applicationid=str(uuid.uuid4()),
                accessmode=NON_INTERACTIVE,
            )
            for column in ("title", "jobtitle", "mobilephone", "address1_telephone1"):
                del row[column]
        return row

    def _team(self, i: int, faker: bool) -> Row:
        """Of every 5 teams: 3 owner teams, 1 access team (i % 5 == 3), 1 Entra security group team (== 4)."""
        name = f"{_TEAM_NAMES[i % len(_TEAM_NAMES)]} Team {i + 1}"
        teamtype = {3: 1, 4: 2}.get(i % 5, 0)
        row: Row = {
            "name": name,
            "teamtype": teamtype,
            "isdefault": False,
            "emailaddress": f"{name.lower().replace(' ', '.')}@contoso.example",
        }
        if teamtype == 2:
            row["azureactivedirectoryobjectid"] = str(uuid.uuid4())
        admins = self._administrators()
        row["_administratorid_value"], row["~administratorid"] = admins[i % len(admins)], "systemuser"
        return row

    def _administrators(self) -> list[str]:
        users = self.store["systemuser"].rows
        if self._admins is None:
            order = self.store["systemuser"].order
            self._admins = [uid for uid in order if seedable_owner("systemuser", users[uid])] or [self.owner_id]
        return self._admins
