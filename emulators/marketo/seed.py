"""Realistic persons for tests and benchmarks: Faker for small numbers, a fast generator for large ones.

The fast generator combines fixed name, company and place lists with a counter, so 100,000 persons take about a
second and every e-mail address is unique.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from typing import Any

FAKER_LIMIT = 2000

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
    "Sofia",
    "Liam",
    "Emma",
    "Noah",
    "Olivia",
    "Lucas",
    "Mia",
    "Hugo",
    "Chloe",
    "Mateo",
    "Aiko",
    "Kenji",
    "Priya",
    "Arjun",
    "Fatima",
    "Omar",
    "Ingrid",
    "Lars",
    "Zoe",
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
]
_COMPANY_A = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Cyberdyne",
    "Tyrell",
    "Wonka",
    "Aperture",
]
_COMPANY_B = ["Corp", "Inc", "LLC", "Group", "Systems", "Labs", "Partners", "Holdings", "Industries", "Solutions"]
_TITLES = [
    "CEO",
    "CTO",
    "CFO",
    "VP Marketing",
    "VP Sales",
    "Marketing Manager",
    "Sales Director",
    "Account Executive",
    "Engineer",
    "Product Manager",
    "Analyst",
    "Consultant",
    "Operations Manager",
    "IT Director",
]
_PLACES = (
    ("New York", "NY", "10001", "USA"),
    ("Chicago", "IL", "60601", "USA"),
    ("Austin", "TX", "73301", "USA"),
    ("Seattle", "WA", "98101", "USA"),
    ("Boston", "MA", "02108", "USA"),
    ("Toronto", "ON", "M5H 2N2", "Canada"),
    ("London", "", "EC1A 1BB", "United Kingdom"),
    ("Berlin", "", "10115", "Germany"),
    ("Paris", "", "75001", "France"),
    ("Sydney", "NSW", "2000", "Australia"),
)
_SOURCES = ("Web", "Trade Show", "Webinar", "Referral", "Paid Search", "Partner", "List Import")
_DOMAINS = ("example.com", "example.org", "example.net")


def fast_persons(count: int, start: int = 0, rng_seed: int = 7) -> Iterator[dict[str, Any]]:
    rng = random.Random(rng_seed + start)
    intern = sys.intern
    companies = [intern(f"{a} {b}") for a in _COMPANY_A for b in _COMPANY_B]
    for number in range(start, start + count):
        first = rng.choice(_FIRST)
        last = rng.choice(_LAST)
        city, state, postal, country = rng.choice(_PLACES)
        yield {
            "email": f"{first.lower()}.{last.lower()}.{number}@{_DOMAINS[number % 3]}",
            "firstName": first,
            "lastName": last,
            "company": rng.choice(companies),
            "title": rng.choice(_TITLES),
            "phone": f"+1-555-{number % 1000:03d}-{number % 10000:04d}",
            "leadSource": rng.choice(_SOURCES),
            "city": city,
            "state": state or None,
            "postalCode": postal,
            "country": country,
        }


def faker_persons(count: int, start: int = 0, rng_seed: int = 7) -> Iterator[dict[str, Any]]:
    from faker import Faker

    fake = Faker()
    fake.seed_instance(rng_seed + start)
    for number in range(start, start + count):
        first = fake.first_name()
        last = fake.last_name()
        yield {
            "email": f"{first.lower()}.{last.lower()}.{number}@{_DOMAINS[number % 3]}".replace(" ", ""),
            "firstName": first,
            "lastName": last,
            "company": fake.company(),
            "title": fake.job()[:255],
            "phone": fake.phone_number(),
            "leadSource": fake.random_element(_SOURCES),
            "address": fake.street_address(),
            "city": fake.city(),
            "state": fake.state_abbr(),
            "postalCode": fake.postcode(),
            "country": "USA",
        }


def persons(count: int, start: int = 0, fast: bool | None = None, rng_seed: int = 7) -> Iterator[dict[str, Any]]:
    use_fast = count > FAKER_LIMIT if fast is None else fast
    return (fast_persons if use_fast else faker_persons)(count, start, rng_seed)
