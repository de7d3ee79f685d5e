"""The tables the emulator serves: columns, types, lengths, option sets, lookups, keys, change tracking.

Column names, lengths and option values follow the Dynamics 365 entity reference for the standard tables. The
schema is mutable per emulator (an admin can add or remove a column, or turn change tracking off) and is rebuilt
on reset.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = uuid.UUID("5b0f9c1e-3d0a-4c1e-9d52-7d1b3f0c2a10")

STRING_TYPES = frozenset({"String", "Memo"})
CHOICE_TYPES = frozenset({"Picklist", "State", "Status"})
LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
NUMBER_TYPES = frozenset({"Integer", "BigInt", "Decimal", "Money", "Double"})

# AttributeType -> (metadata @odata.type, Edm type used in OData error messages)
TYPE_INFO: dict[str, tuple[str, str]] = {
    "String": ("StringAttributeMetadata", "Edm.String"),
    "Memo": ("MemoAttributeMetadata", "Edm.String"),
    "Integer": ("IntegerAttributeMetadata", "Edm.Int32"),
    "BigInt": ("BigIntAttributeMetadata", "Edm.Int64"),
    "Decimal": ("DecimalAttributeMetadata", "Edm.Decimal"),
    "Money": ("MoneyAttributeMetadata", "Edm.Decimal"),
    "Double": ("DoubleAttributeMetadata", "Edm.Double"),
    "Boolean": ("BooleanAttributeMetadata", "Edm.Boolean"),
    "DateTime": ("DateTimeAttributeMetadata", "Edm.DateTimeOffset"),
    "Picklist": ("PicklistAttributeMetadata", "Edm.Int32"),
    "State": ("StateAttributeMetadata", "Edm.Int32"),
    "Status": ("StatusAttributeMetadata", "Edm.Int32"),
    "Lookup": ("LookupAttributeMetadata", "Edm.Guid"),
    "Customer": ("LookupAttributeMetadata", "Edm.Guid"),
    "Owner": ("LookupAttributeMetadata", "Edm.Guid"),
    "Uniqueidentifier": ("UniqueIdentifierAttributeMetadata", "Edm.Guid"),
}


@dataclass
class Column:
    name: str
    type: str
    max_length: int | None = None
    required: str = "None"  # None | SystemRequired | ApplicationRequired | Recommended
    targets: tuple[str, ...] = ()  # lookup target tables
    options: dict[int, str] | None = None  # choice value -> label
    status_state: dict[int, int] | None = None  # Status columns: statuscode -> statecode
    default: Any = None  # applied on create when the column is not given
    read_only: bool = False  # maintained by the server (createdon, versionnumber, fullname, ...)
    custom: bool = False
    display_name: str = ""
    nav: dict[str, str] = field(default_factory=dict)  # lookups: navigation property -> target table

    def __post_init__(self) -> None:
        self.is_lookup = self.type in LOOKUP_TYPES
        # The property name in JSON: `_x_value` for lookups, else the logical name.
        self.attribute = f"_{self.name}_value" if self.is_lookup else self.name

    @property
    def edm_type(self) -> str:
        return TYPE_INFO[self.type][1]

    def metadata_id(self, table: str) -> str:
        return str(uuid.uuid5(NAMESPACE, f"{table}.{self.name}"))


@dataclass
class Table:
    logical_name: str
    entity_set: str
    primary_id: str
    primary_name: str
    display_name: str
    columns: dict[str, Column]
    alternate_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)  # key logical name -> columns
    change_tracking: bool = True
    custom: bool = False
    read_only: bool = False  # e.g. teammembership: no create/update/delete through the Web API
    object_type_code: int = 0
    # Derived indexes, rebuilt by refresh()
    attributes: dict[str, Column] = field(default_factory=dict)  # JSON property -> column
    nav_props: dict[str, tuple[Column, str]] = field(default_factory=dict)  # navigation property -> (column, target)
    output_attributes: list[str] = field(default_factory=list)
    system_required: list[Column] = field(default_factory=list)
    defaulted: list[Column] = field(default_factory=list)  # columns given a value on create when missing

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        self.attributes = {column.attribute: column for column in self.columns.values()}
        self.nav_props = {}
        for column in self.columns.values():
            for nav, target in column.nav.items():
                self.nav_props[nav] = (column, target)
        self.output_attributes = list(self.attributes)
        self.system_required = [c for c in self.columns.values() if c.required == "SystemRequired"]
        self.defaulted = [c for c in self.columns.values() if c.default is not None or c.type == "Owner"]

    @property
    def metadata_id(self) -> str:
        return str(uuid.uuid5(NAMESPACE, self.logical_name))

    @property
    def type_name(self) -> str:
        return f"Microsoft.Dynamics.CRM.{self.logical_name}"


# ----------------------------------------------------------------------------------------------------------------
# Option sets (values and labels as in a default Dynamics 365 Sales organization)

LEAD_SOURCE = {
    1: "Advertisement",
    2: "Employee Referral",
    3: "External Referral",
    4: "Partner",
    5: "Public Relations",
    6: "Seminar",
    7: "Trade Show",
    8: "Web",
    9: "Word of Mouth",
    10: "Other",
}
INDUSTRY = {
    1: "Accounting",
    2: "Agriculture and Non-petrol Natural Resource Extraction",
    3: "Broadcasting Printing and Publishing",
    4: "Brokers",
    5: "Building Supply Retail",
    6: "Business Services",
    7: "Consulting",
    8: "Consumer Services",
    9: "Design, Direction and Creative Management",
    10: "Distributors, Dispatchers and Processors",
    11: "Doctor's Offices and Clinics",
    12: "Durable Manufacturing",
    13: "Eating and Drinking Places",
    14: "Entertainment Retail",
    15: "Equipment Rental and Leasing",
    16: "Financial",
    17: "Food and Tobacco Processing",
    18: "Inbound Capital Intensive Processing",
    19: "Inbound Repair and Services",
    20: "Insurance",
    21: "Legal Services",
    22: "Non-Durable Merchandise Retail",
    23: "Outbound Consumer Service",
    24: "Petrochemical Extraction and Distribution",
    25: "Service Retail",
    26: "SIG Affiliations",
    27: "Social Services",
    28: "Special Outbound Trade Contractors",
    29: "Specialty Realty",
    30: "Transportation",
    31: "Utility Creation and Distribution",
    32: "Vehicle Retail",
    33: "Wholesale",
}
RATING = {1: "Hot", 2: "Warm", 3: "Cold"}
CONTACT_METHOD = {1: "Any", 2: "Email", 3: "Phone", 4: "Fax", 5: "Mail"}
ACCOUNT_CATEGORY = {1: "Preferred Customer", 2: "Standard"}
SALES_STAGE = {0: "Qualify", 1: "Develop", 2: "Propose", 3: "Close"}
TEAM_TYPE = {0: "Owner", 1: "Access", 2: "Security Group", 3: "Office Group"}
ACCESS_TEAM = 1  # teamtype of a team that shares records but cannot own them
ACCESS_MODE = {0: "Read-Write", 1: "Administrative", 2: "Read", 3: "Support User", 4: "Non-interactive"}
PRODUCT_CATEGORY = {100000000: "Hardware", 100000001: "Software", 100000002: "Services"}

ACTIVE_STATE = {0: "Active", 1: "Inactive"}
ACTIVE_STATUS = {1: "Active", 2: "Inactive"}
ACTIVE_STATUS_STATE = {1: 0, 2: 1}
LEAD_STATE = {0: "Open", 1: "Qualified", 2: "Disqualified"}
LEAD_STATUS = {
    1: "New",
    2: "Contacted",
    3: "Qualified",
    4: "Lost",
    5: "Cannot Contact",
    6: "No Longer Interested",
    7: "Canceled",
}
LEAD_STATUS_STATE = {1: 0, 2: 0, 3: 1, 4: 2, 5: 2, 6: 2, 7: 2}
OPPORTUNITY_STATE = {0: "Open", 1: "Won", 2: "Lost"}
OPPORTUNITY_STATUS = {1: "In Progress", 2: "On Hold", 3: "Won", 4: "Canceled", 5: "Out-Sold"}
OPPORTUNITY_STATUS_STATE = {1: 0, 2: 0, 3: 1, 4: 2, 5: 2}
DEFAULT_STATUS_FOR_STATE = {
    "lead": {0: 1, 1: 3, 2: 4},
    "opportunity": {0: 1, 1: 3, 2: 4},
}


def _s(name: str, length: int, label: str = "", **kw: Any) -> Column:
    return Column(name, "String", max_length=length, display_name=label or name, **kw)


def _lookup(name: str, target: str, nav: str | None = None, **kw: Any) -> Column:
    return Column(name, "Lookup", targets=(target,), nav={nav or name: target}, display_name=name, **kw)


def _customer(name: str) -> Column:
    return Column(
        name,
        "Customer",
        targets=("account", "contact"),
        nav={f"{name}_account": "account", f"{name}_contact": "contact"},
        display_name=name,
    )


def _common(primary_id: str, *, owner: bool = True, state: dict[int, str] | None = None) -> list[Column]:
    columns = [
        Column(primary_id, "Uniqueidentifier", display_name=primary_id),
        Column("createdon", "DateTime", read_only=True, display_name="Created On"),
        Column("modifiedon", "DateTime", read_only=True, display_name="Modified On"),
        Column("versionnumber", "BigInt", read_only=True, display_name="Version Number"),
        Column("createdby", "Lookup", targets=("systemuser",), nav={"createdby": "systemuser"}, read_only=True),
        Column("modifiedby", "Lookup", targets=("systemuser",), nav={"modifiedby": "systemuser"}, read_only=True),
    ]
    if owner:
        columns.append(
            Column(
                "ownerid",
                "Owner",
                targets=("systemuser", "team"),
                nav={"ownerid": "principal"},
                required="SystemRequired",
                display_name="Owner",
            )
        )
        # The server keeps these two in step with ownerid: one names the owner, the other is null.
        columns.append(_lookup("owninguser", "systemuser", read_only=True))
        columns.append(_lookup("owningteam", "team", read_only=True))
    if state is not None:
        columns.append(Column("statecode", "State", options=state, required="SystemRequired", default=0))
    return columns


def _status(options: dict[int, str], status_state: dict[int, int]) -> Column:
    return Column("statuscode", "Status", options=options, status_state=status_state, default=1)


def _address() -> list[Column]:
    return [
        _s("address1_line1", 250, "Street 1"),
        _s("address1_city", 80, "City"),
        _s("address1_stateorprovince", 50, "State/Province"),
        _s("address1_postalcode", 20, "ZIP/Postal Code"),
        _s("address1_country", 80, "Country/Region"),
    ]


def _sync_flag() -> Column:
    # Two Options; defaults to Yes on create, but rows that existed before the column was added hold null.
    return Column("new_synctomkto", "Boolean", default=True, custom=True, display_name="Sync to Marketo")


def _table(
    logical: str, entity_set: str, primary_id: str, primary_name: str, columns: list[Column], **kw: Any
) -> Table:
    return Table(
        logical,
        entity_set,
        primary_id,
        primary_name,
        kw.pop("display", logical.title()),
        {c.name: c for c in columns},
        **kw,
    )


def builtin_tables() -> dict[str, Table]:
    lead = _table(
        "lead",
        "leads",
        "leadid",
        "fullname",
        [
            *_common("leadid", state=LEAD_STATE),
            _status(LEAD_STATUS, LEAD_STATUS_STATE),
            _s("fullname", 160, "Name", read_only=True),
            _s("subject", 300, "Topic"),
            _s("firstname", 50, "First Name"),
            _s("middlename", 50, "Middle Name"),
            _s("lastname", 50, "Last Name", required="ApplicationRequired"),
            _s("emailaddress1", 100, "Email"),
            _s("emailaddress2", 100, "Email Address 2"),
            _s("companyname", 100, "Company Name"),
            _s("jobtitle", 100, "Job Title"),
            _s("telephone1", 50, "Business Phone"),
            _s("mobilephone", 20, "Mobile Phone"),
            _s("websiteurl", 200, "Website"),
            *_address(),
            Column("description", "Memo", max_length=2000, display_name="Description"),
            Column("numberofemployees", "Integer", display_name="No. of Employees"),
            Column("revenue", "Money", display_name="Annual Revenue"),
            Column("leadsourcecode", "Picklist", options=LEAD_SOURCE, display_name="Lead Source"),
            Column("industrycode", "Picklist", options=INDUSTRY, display_name="Industry"),
            Column("leadqualitycode", "Picklist", options=RATING, default=2, display_name="Rating"),
            Column("donotemail", "Boolean", default=False, display_name="Do not allow Emails"),
            _lookup("parentaccountid", "account"),
            _lookup("parentcontactid", "contact"),
            _lookup("qualifyingopportunityid", "opportunity"),
            _sync_flag(),
            _s("new_marketopersonid", 100, "Marketo Person Id", custom=True),
        ],
        alternate_keys={"new_marketopersonid_key": ("new_marketopersonid",)},
        object_type_code=4,
    )
    contact = _table(
        "contact",
        "contacts",
        "contactid",
        "fullname",
        [
            *_common("contactid", state=ACTIVE_STATE),
            _status(ACTIVE_STATUS, ACTIVE_STATUS_STATE),
            _s("fullname", 160, "Full Name", read_only=True),
            _s("firstname", 50, "First Name"),
            _s("middlename", 50, "Middle Name"),
            _s("lastname", 50, "Last Name", required="ApplicationRequired"),
            _s("emailaddress1", 100, "Email"),
            _s("emailaddress2", 100, "Email Address 2"),
            _s("jobtitle", 100, "Job Title"),
            _s("telephone1", 50, "Business Phone"),
            _s("mobilephone", 50, "Mobile Phone"),
            *_address(),
            Column("description", "Memo", max_length=2000, display_name="Description"),
            Column("preferredcontactmethodcode", "Picklist", options=CONTACT_METHOD, default=1),
            Column("donotemail", "Boolean", default=False, display_name="Do not allow Emails"),
            _customer("parentcustomerid"),
            _lookup("originatingleadid", "lead"),
            _sync_flag(),
            _s("new_marketopersonid", 100, "Marketo Person Id", custom=True),
        ],
        alternate_keys={"new_marketopersonid_key": ("new_marketopersonid",)},
        object_type_code=2,
    )
    account = _table(
        "account",
        "accounts",
        "accountid",
        "name",
        [
            *_common("accountid", state=ACTIVE_STATE),
            _status(ACTIVE_STATUS, ACTIVE_STATUS_STATE),
            _s("name", 160, "Account Name", required="ApplicationRequired"),
            _s("accountnumber", 20, "Account Number"),
            _s("emailaddress1", 100, "Email"),
            _s("telephone1", 50, "Main Phone"),
            _s("websiteurl", 200, "Website"),
            _s("sic", 20, "SIC Code"),
            *_address(),
            Column("description", "Memo", max_length=2000, display_name="Description"),
            Column("numberofemployees", "Integer", display_name="Number of Employees"),
            Column("revenue", "Money", display_name="Annual Revenue"),
            Column("industrycode", "Picklist", options=INDUSTRY, display_name="Industry"),
            Column("accountcategorycode", "Picklist", options=ACCOUNT_CATEGORY, display_name="Category"),
            _lookup("parentaccountid", "account"),
            _lookup("primarycontactid", "contact"),
            _lookup("originatingleadid", "lead"),
            _sync_flag(),
        ],
        object_type_code=1,
    )
    opportunity = _table(
        "opportunity",
        "opportunities",
        "opportunityid",
        "name",
        [
            *_common("opportunityid", state=OPPORTUNITY_STATE),
            _status(OPPORTUNITY_STATUS, OPPORTUNITY_STATUS_STATE),
            _s("name", 300, "Topic", required="ApplicationRequired"),
            _customer("customerid"),
            _lookup("parentaccountid", "account"),
            _lookup("parentcontactid", "contact"),
            _lookup("originatingleadid", "lead"),
            Column("estimatedvalue", "Money", display_name="Est. Revenue"),
            Column("actualvalue", "Money", display_name="Actual Revenue"),
            Column("estimatedclosedate", "DateTime", display_name="Est. Close Date"),
            Column("actualclosedate", "DateTime", display_name="Actual Close Date"),
            Column("closeprobability", "Integer", display_name="Probability"),
            _s("stepname", 200, "Pipeline Phase"),
            Column("salesstagecode", "Picklist", options=SALES_STAGE, default=0, display_name="Sales Stage"),
            Column("opportunityratingcode", "Picklist", options=RATING, default=2, display_name="Rating"),
            Column("description", "Memo", max_length=2000, display_name="Description"),
            _sync_flag(),
        ],
        object_type_code=3,
    )
    systemuser = _table(
        "systemuser",
        "systemusers",
        "systemuserid",
        "fullname",
        [
            *_common("systemuserid", owner=False),
            _s("fullname", 200, "Full Name", read_only=True),
            _s("firstname", 256, "First Name"),
            _s("lastname", 256, "Last Name"),
            _s("domainname", 1024, "User Name", required="SystemRequired"),
            _s("internalemailaddress", 100, "Primary Email"),
            _s("title", 128, "Title"),
            _s("jobtitle", 100, "Job Title"),
            _s("mobilephone", 64, "Mobile Phone"),
            _s("address1_telephone1", 64, "Main Phone"),
            Column("isdisabled", "Boolean", default=False, display_name="Status"),
            Column("accessmode", "Picklist", options=ACCESS_MODE, default=0, display_name="Access Mode"),
            Column("applicationid", "Uniqueidentifier", display_name="Application ID"),
            Column("azureactivedirectoryobjectid", "Uniqueidentifier", display_name="Azure AD Object ID"),
        ],
        object_type_code=8,
        display="User",
    )
    team = _table(
        "team",
        "teams",
        "teamid",
        "name",
        [
            *_common("teamid", owner=False),
            _s("name", 160, "Team Name", required="SystemRequired"),
            Column("teamtype", "Picklist", options=TEAM_TYPE, default=0, display_name="Team Type"),
            _s("emailaddress", 100, "Email"),
            Column("description", "Memo", max_length=2000, display_name="Description"),
            Column("isdefault", "Boolean", default=False, display_name="Is Default"),
            _lookup("administratorid", "systemuser"),
            Column("azureactivedirectoryobjectid", "Uniqueidentifier", display_name="Entra ID Object ID"),
        ],
        object_type_code=9,
    )
    teammembership = _table(
        "teammembership",
        "teammemberships",
        "teammembershipid",
        "teammembershipid",
        [
            Column("teammembershipid", "Uniqueidentifier"),
            Column("systemuserid", "Uniqueidentifier"),
            Column("teamid", "Uniqueidentifier"),
            Column("versionnumber", "BigInt", read_only=True),
        ],
        read_only=True,
        object_type_code=23,
        display="Team Membership",
    )
    connectionrole = _table(
        "connectionrole",
        "connectionroles",
        "connectionroleid",
        "name",
        [
            *_common("connectionroleid", owner=False, state=ACTIVE_STATE),
            _status(ACTIVE_STATUS, ACTIVE_STATUS_STATE),
            _s("name", 100, "Name", required="SystemRequired"),
            Column("category", "Picklist", options={1: "Business", 2: "Family", 3: "Social", 4: "Sales Team"}),
        ],
        object_type_code=3231,
        display="Connection Role",
    )
    connection_targets = ("account", "contact", "lead", "opportunity", "systemuser", "team")
    connection = _table(
        "connection",
        "connections",
        "connectionid",
        "name",
        [
            *_common("connectionid", state=ACTIVE_STATE),
            _status(ACTIVE_STATUS, ACTIVE_STATUS_STATE),
            _s("name", 500, "Name", read_only=True),
            Column(
                "record1id",
                "Lookup",
                targets=connection_targets,
                nav={f"record1id_{t}": t for t in connection_targets},
                required="SystemRequired",
            ),
            Column(
                "record2id",
                "Lookup",
                targets=connection_targets,
                nav={f"record2id_{t}": t for t in connection_targets},
                required="SystemRequired",
            ),
            _lookup("record1roleid", "connectionrole"),
            _lookup("record2roleid", "connectionrole"),
            _lookup("relatedconnectionid", "connection", read_only=True),
            Column("ismaster", "Boolean", read_only=True, default=True),
            Column("effectivestart", "DateTime"),
            Column("effectiveend", "DateTime"),
            Column("description", "Memo", max_length=4000),
        ],
        object_type_code=3234,
    )
    product = _table(
        "new_product",
        "new_products",
        "new_productid",
        "new_name",
        [
            *_common("new_productid", state=ACTIVE_STATE),
            _status(ACTIVE_STATUS, ACTIVE_STATUS_STATE),
            _s("new_name", 100, "Name", required="SystemRequired", custom=True),
            _s("new_sku", 100, "SKU", custom=True),
            Column("new_price", "Money", custom=True, display_name="Price"),
            Column("new_category", "Picklist", options=PRODUCT_CATEGORY, custom=True, display_name="Category"),
            # A custom lookup's navigation property is its schema name (case matters), as Dataverse generates it.
            _lookup("new_accountid", "account", nav="new_AccountId", custom=True),
        ],
        custom=True,
        object_type_code=10010,
        display="Product (custom)",
    )
    tables = [
        lead,
        contact,
        account,
        opportunity,
        systemuser,
        team,
        teammembership,
        connectionrole,
        connection,
        product,
    ]
    for table in tables:
        for column in table.columns.values():
            if column.custom is False and column.name.startswith("new_"):
                column.custom = True
    return {table.logical_name: table for table in tables}


def clone_tables(tables: dict[str, Table]) -> dict[str, Table]:
    return copy.deepcopy(tables)
