"""CloudFormation intrinsic functions (stack/intrinsics.py), resolved as CloudFormation documents them."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import yaml

from stack.intrinsics import Context, TemplateError, evaluate_condition, resolve, resolve_parameters

QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:orders"
QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
PSEUDO = {
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "shop",
}


def context(**changes: Any) -> Context:
    """A fresh context (each caches its conditions), parameters typed as resolve_parameters types them."""
    fields: dict[str, Any] = {
        "parameters": {"Env": "prod", "Size": 10, "Subnets": ["subnet-a", "subnet-b"], "Attr": "QueueName"},
        "pseudo": PSEUDO,
        "refs": {"Queue": QUEUE_URL, "Fn": "orders-fn"},
        "attributes": {
            "Queue": {"Arn": QUEUE_ARN, "QueueName": "orders"},
            "Db": {"Endpoint.Address": "db.example.com"},
        },
        "conditions": {
            "IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
            "IsDev": {"Fn::Not": [{"Condition": "IsProd"}]},
        },
        "mappings": {"Memory": {"prod": {"Size": 1024}, "dev": {"Size": 128}}},
    }
    return Context(**(fields | changes))


def resolved(value: Any, **changes: Any) -> Any:
    return resolve(value, context(**changes))


def error(value: Any, **changes: Any) -> str:
    """The message resolving `value` in function Fn's property X fails with."""
    with pytest.raises(TemplateError) as raised:
        resolve(value, context(**changes), resource="Fn", path="Properties.X")
    return str(raised.value)


# --- Ref and Fn::GetAtt -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Env", "prod"),
        ("Size", 10),
        ("Subnets", ["subnet-a", "subnet-b"]),
        ("AWS::Region", "eu-west-1"),
        ("AWS::AccountId", "123456789012"),
        ("Queue", QUEUE_URL),
    ],
)
def test_ref_returns_a_parameter_pseudo_parameter_or_resource_value(name: str, expected: Any) -> None:
    assert resolved({"Ref": name}) == expected


def test_ref_to_an_unknown_name_lists_what_exists() -> None:
    assert error({"Ref": "Nope"}) == (
        "Resources.Fn.Properties.X: Ref to 'Nope': 'Nope' is neither a parameter nor a resource "
        "(parameters: Attr, Env, Size, Subnets; resources: Fn, Queue)"
    )
    assert "no such pseudo parameter" in error({"Ref": "AWS::NotificationARNs"})


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ({"Fn::GetAtt": ["Queue", "Arn"]}, QUEUE_ARN),
        ({"Fn::GetAtt": "Queue.Arn"}, QUEUE_ARN),
        ({"Fn::GetAtt": ["Queue", {"Ref": "Attr"}]}, "orders"),  # the attribute name may be a Ref
        ({"Fn::GetAtt": "Db.Endpoint.Address"}, "db.example.com"),  # split at the first dot
        ({"Fn::GetAtt": ["Db", "Endpoint.Address"]}, "db.example.com"),
    ],
)
def test_get_att_in_both_forms(function: Any, expected: str) -> None:
    assert resolved(function) == expected


@pytest.mark.parametrize(
    ("function", "why"),
    [
        ({"Fn::GetAtt": ["Queue", "Nope"]}, "'Queue' has no attribute 'Nope' (known: Arn, QueueName)"),
        ({"Fn::GetAtt": ["Topic", "Arn"]}, "no attributes are known for 'Topic'"),
        ({"Fn::GetAtt": "QueueArn"}, "Fn::GetAtt takes [resource, attribute] or 'resource.attribute'"),
    ],
)
def test_get_att_errors(function: Any, why: str) -> None:
    assert why in error(function)


# --- Fn::Sub ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        (
            "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${Env}-orders",
            "arn:aws:sqs:eu-west-1:123456789012:prod-orders",
        ),
        ("${Queue} is ${Queue.Arn}", f"{QUEUE_URL} is {QUEUE_ARN}"),
        ("db=${Db.Endpoint.Address}", "db=db.example.com"),
        ("size=${Size}", "size=10"),
        ("${!Literal} and ${!Env} stay, ${Env} goes", "${Literal} and ${Env} stay, prod goes"),
        ("no placeholders", "no placeholders"),
        (["${Name}-${Env}", {"Name": "orders"}], "orders-prod"),
        (["${Env}", {"Env": "shadowed"}], "shadowed"),  # a variable wins over a parameter of its name
        (
            [
                "${Arn}|${Joined}|${Region}|${Picked}",
                {
                    "Arn": {"Fn::GetAtt": ["Queue", "Arn"]},
                    "Joined": {"Fn::Join": ["-", [{"Ref": "Env"}, "x"]]},
                    "Region": {"Ref": "AWS::Region"},
                    "Picked": {"Fn::If": ["IsProd", {"Fn::Sub": "big-${Size}"}, "small"]},
                },
            ],
            f"{QUEUE_ARN}|prod-x|eu-west-1|big-10",
        ),
    ],
)
def test_sub(argument: Any, expected: str) -> None:
    assert resolved({"Fn::Sub": argument}) == expected


@pytest.mark.parametrize(
    ("argument", "why"),
    [
        ("${Nope}", "Fn::Sub ${Nope}: 'Nope' is neither a parameter nor a resource"),
        ("${Queue.Nope}", "Fn::Sub ${Queue.Nope}: 'Queue' has no attribute 'Nope'"),
        ("${Subnets}", "Fn::Sub ${Subnets}: a list ['subnet-a', 'subnet-b'] is not a string or a number"),
        (["${A}", {"A": {"Ref": "Nope"}}], "Ref to 'Nope'"),
        (["${A}", "not a map"], "Fn::Sub takes a string or [string, {variables}]"),
    ],
)
def test_sub_errors(argument: Any, why: str) -> None:
    assert why in error({"Fn::Sub": argument})


# --- Fn::Join, Fn::Select, Fn::Split ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        (["-", [{"Ref": "Env"}, {"Fn::Sub": "${AWS::Region}-${Size}"}, "x"]], "prod-eu-west-1-10-x"),
        ([",", {"Ref": "Subnets"}], "subnet-a,subnet-b"),  # a list parameter as the values
        ([",", ["a", {"Fn::If": ["IsDev", "b", {"Ref": "AWS::NoValue"}]}, "c"]], "a,c"),
        (["", []], ""),
    ],
)
def test_join(argument: Any, expected: str) -> None:
    assert resolved({"Fn::Join": argument}) == expected


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ([1, {"Ref": "Subnets"}], "subnet-b"),
        (["0", ["first", "second"]], "first"),  # the index may be a string
        ([{"Fn::Select": [0, [1]]}, ["a", "b"]], "b"),  # or an intrinsic
        ([2, {"Fn::Split": ["-", {"Ref": "AWS::Region"}]}], "1"),
        ([0, {"Fn::GetAZs": ""}], "eu-west-1a"),
    ],
)
def test_select(argument: Any, expected: Any) -> None:
    assert resolved({"Fn::Select": argument}) == expected


def test_select_out_of_range_names_the_resource_and_property() -> None:
    assert error({"Fn::Select": [2, ["a", "b"]]}) == (
        "Resources.Fn.Properties.X: Fn::Select: index 2 is out of range for a list of 2"
    )


@pytest.mark.parametrize(
    ("argument", "why"),
    [
        ([-1, ["a"]], "index -1 is out of range for a list of 1"),
        (["one", ["a"]], "'one' is not an index"),
        ([True, ["a"]], "True is not an index"),
        ([0, "a,b"], "'a,b' is not a list"),
        ([0], "Fn::Select takes [index, [values]]"),
    ],
)
def test_select_errors(argument: Any, why: str) -> None:
    assert why in error({"Fn::Select": argument})


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        (["|", "a|b||c"], ["a", "b", "", "c"]),
        ([",", "alone"], ["alone"]),
        (["-", {"Fn::Sub": "${Env}-${AWS::Region}"}], ["prod", "eu", "west", "1"]),
    ],
)
def test_split(argument: Any, expected: list[str]) -> None:
    assert resolved({"Fn::Split": argument}) == expected


def test_split_needs_a_delimiter() -> None:
    assert "the delimiter must be a non-empty string" in error({"Fn::Split": ["", "abc"]})


# --- Fn::If and AWS::NoValue ------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "expected"), [("prod", "big"), ("dev", "small")])
def test_if_takes_the_branch_its_condition_picks(env: str, expected: str) -> None:
    parameters = {"Env": env}
    assert resolved({"Fn::If": ["IsProd", "big", "small"]}, parameters=parameters) == expected
    # Fn::If over a condition that names another condition
    flipped = "small" if expected == "big" else "big"
    assert resolved({"Fn::If": ["IsDev", "big", "small"]}, parameters=parameters) == flipped


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("prod", {"Fn::If": ["IsProd", {"Ref": "Env"}, {"Ref": "DevOnlyParameter"}]}),
        ("dev", {"Fn::If": ["IsProd", {"Fn::GetAtt": ["ProdOnly", "Arn"]}, {"Ref": "Env"}]}),
    ],
)
def test_if_resolves_only_the_branch_taken(env: str, value: Any) -> None:
    assert resolved(value, parameters={"Env": env}) == env


def test_no_value_drops_a_key_and_a_list_element() -> None:
    no_value = {"Ref": "AWS::NoValue"}
    template = {
        "BatchSize": {"Fn::If": ["IsDev", 1, no_value]},
        "Kept": {"Fn::If": ["IsProd", "yes", no_value]},
        "Items": ["a", {"Fn::If": ["IsDev", "b", no_value]}, no_value, "c"],
        "Nested": {"Gone": no_value},
    }
    assert resolved(template) == {"Kept": "yes", "Items": ["a", "c"], "Nested": {}}
    assert resolved(no_value) is None  # a whole property of AWS::NoValue is absent


def test_if_on_an_unknown_condition_names_the_resource() -> None:
    assert error({"Fn::If": ["IsStaging", 1, 2]}) == (
        "Resources.Fn.Properties.X: unknown condition 'IsStaging' (conditions: IsDev, IsProd)"
    )


# --- Conditions -------------------------------------------------------------------------------------

CONDITIONS = {
    "IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
    "IsEu": {"Fn::Equals": [{"Fn::Select": [0, {"Fn::Split": ["-", {"Ref": "AWS::Region"}]}]}, "eu"]},
    "IsDev": {"Fn::Not": [{"Condition": "IsProd"}]},
    "IsProdInEu": {"Fn::And": [{"Condition": "IsProd"}, {"Condition": "IsEu"}]},
    "IsDevInEu": {"Fn::And": [{"Condition": "IsDev"}, {"Condition": "IsEu"}]},
    "IsDevOrUs": {"Fn::Or": [{"Condition": "IsDev"}, {"Fn::Not": [{"Condition": "IsEu"}]}]},
    "IsBigProd": {
        "Fn::And": [
            {"Condition": "IsProd"},
            {"Fn::Equals": [{"Fn::FindInMap": ["Memory", "prod", "Size"]}, 1024]},
        ]
    },
}


@pytest.mark.parametrize(
    ("name", "in_prod", "in_dev"),
    [
        ("IsProd", True, False),
        ("IsEu", True, True),
        ("IsDev", False, True),
        ("IsProdInEu", True, False),
        ("IsDevInEu", False, True),
        ("IsDevOrUs", False, True),
        ("IsBigProd", True, False),
    ],
)
def test_conditions_compose_with_and_or_not_equals_and_condition(
    name: str, in_prod: bool, in_dev: bool
) -> None:
    assert evaluate_condition(name, context(conditions=CONDITIONS, parameters={"Env": "prod"})) is in_prod
    assert evaluate_condition(name, context(conditions=CONDITIONS, parameters={"Env": "dev"})) is in_dev


def test_circular_conditions_are_an_error() -> None:
    circular = {"A": {"Fn::Not": [{"Condition": "B"}]}, "B": {"Fn::Not": [{"Condition": "A"}]}}
    with pytest.raises(TemplateError) as raised:
        evaluate_condition("A", context(conditions=circular))
    assert str(raised.value) == "Conditions.B: circular condition reference: A -> B -> A"

    selfish = {"A": {"Fn::Or": [{"Condition": "A"}, {"Fn::Equals": [1, 1]}]}}
    with pytest.raises(TemplateError, match="circular condition reference: A -> A"):
        evaluate_condition("A", context(conditions=selfish))


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        (
            {"A": {"Fn::Not": [{"Condition": "Gone"}]}},
            "Conditions.A: unknown condition 'Gone' (conditions: A)",
        ),
        ({"A": {"Ref": "Env"}}, "Conditions.A: condition 'A' is 'prod', not true or false"),
        ({"A": {"Fn::Not": ["yes"]}}, "Conditions.A: Fn::Not: 'yes' is not a condition"),
        (
            {"A": {"Fn::And": [{"Fn::Equals": [1, 1]}]}},
            "Conditions.A: Fn::And takes a list of 2 to 10 conditions",
        ),
        (
            {"A": {"Fn::Or": [{"Fn::Equals": [1, 1]}] * 11}},
            "Conditions.A: Fn::Or takes a list of 2 to 10 conditions",
        ),
    ],
)
def test_condition_errors(conditions: dict[str, Any], message: str) -> None:
    with pytest.raises(TemplateError) as raised:
        evaluate_condition("A", context(conditions=conditions))
    assert str(raised.value).startswith(message)


def test_unknown_condition_names_who_asked() -> None:
    with pytest.raises(TemplateError) as raised:
        evaluate_condition("IsStaging", context(), resource="Fn", path="Condition")
    assert (
        str(raised.value)
        == "Resources.Fn.Condition: unknown condition 'IsStaging' (conditions: IsDev, IsProd)"
    )


def test_condition_outside_the_conditions_section_is_a_plain_key() -> None:
    assert resolved({"Condition": "IsProd"}) == {"Condition": "IsProd"}


# --- Parameters -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "override", "expected"),
    [
        ({"Type": "String", "Default": "orders"}, None, "orders"),
        ({"Type": "String", "Default": "orders"}, "payments", "payments"),
        ({"Type": "String"}, "", ""),
        ({"Type": "Number", "Default": "10"}, None, 10),
        ({"Type": "Number", "Default": 10}, "2.5", 2.5),
        ({"Type": "Number", "Default": "-3"}, None, -3),
        ({"Type": "CommaDelimitedList", "Default": "a, b ,c"}, None, ["a", "b", "c"]),
        ({"Type": "List<Number>", "Default": "80, 443"}, None, [80, 443]),
        ({"Type": "List<AWS::EC2::Subnet::Id>"}, "subnet-1,subnet-2", ["subnet-1", "subnet-2"]),
        ({"Type": "AWS::EC2::VPC::Id", "Default": "vpc-1"}, None, "vpc-1"),
        ({"Type": "String", "Default": "dev", "AllowedValues": ["dev", "prod"]}, "prod", "prod"),
        ({"Type": "Number", "Default": 1, "AllowedValues": [1, 2]}, "2", 2),
        ({"Type": "CommaDelimitedList", "AllowedValues": ["a", "b"]}, "b,a", ["b", "a"]),
    ],
)
def test_parameters_are_typed_as_declared(spec: dict[str, Any], override: str | None, expected: Any) -> None:
    overrides = {} if override is None else {"P": override}
    assert resolve_parameters({"P": spec}, overrides) == {"P": expected}


def test_parameter_value_outside_allowed_values() -> None:
    declared = {"Env": {"Type": "String", "Default": "dev", "AllowedValues": ["dev", "prod"]}}
    with pytest.raises(TemplateError) as raised:
        resolve_parameters(declared, {"Env": "qa"})
    assert str(raised.value) == "Parameters.Env: 'qa' is not one of AllowedValues: dev, prod"
    listed = {"Envs": {"Type": "CommaDelimitedList", "AllowedValues": ["dev", "prod"]}}
    with pytest.raises(TemplateError, match="'qa' is not one of AllowedValues"):
        resolve_parameters(listed, {"Envs": "dev,qa"})


def test_parameter_without_a_value() -> None:
    with pytest.raises(TemplateError) as raised:
        resolve_parameters({"Env": {"Type": "String"}}, {})
    assert (
        str(raised.value) == "Parameters.Env: no value for parameter 'Env': it has no Default and no override"
    )


def test_override_of_an_undeclared_parameter() -> None:
    declared = {"Env": {"Type": "String", "Default": "dev"}, "Size": {"Type": "Number", "Default": "1"}}
    with pytest.raises(TemplateError) as raised:
        resolve_parameters(declared, {"Zone": "a", "Bogus": "1", "Env": "prod"})
    assert str(raised.value) == (
        "Parameters: override 'Bogus', 'Zone' names no parameter of the template (parameters: Env, Size)"
    )


@pytest.mark.parametrize(
    ("spec", "override", "why"),
    [
        ({"Type": "Number"}, "ten", "'ten' is not a Number"),
        ({"Type": "Number"}, "nan", "'nan' is not a Number"),
        ({"Type": "Number"}, "inf", "'inf' is not a Number"),
        ({"Type": "Number"}, "1_000", "'1_000' is not a Number"),
        ({"Type": "Number"}, "", "'' is not a Number"),
        ({"Type": "List<Number>"}, "80,http", "'http' is not a Number"),
        ({"Type": "Strng", "Default": "x"}, None, "unknown parameter Type 'Strng'"),
        ({"Default": "x"}, None, "a parameter needs a Type"),
        ({"Type": "CommaDelimitedList", "Default": ["a", "b"]}, None, "is a list ['a', 'b'], not a string"),
    ],
)
def test_parameter_errors(spec: dict[str, Any], override: str | None, why: str) -> None:
    overrides = {} if override is None else {"P": override}
    with pytest.raises(TemplateError) as raised:
        resolve_parameters({"P": spec}, overrides)
    assert str(raised.value).startswith("Parameters.P: ")
    assert why in str(raised.value)


# --- Fn::FindInMap and the other functions ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        (["Memory", {"Ref": "Env"}, "Size"], 1024),
        (["Memory", "dev", "Size", {"DefaultValue": 256}], 128),  # found: the default is not used
        (["Memory", "qa", "Size", {"DefaultValue": 256}], 256),  # missing top-level key
        (["Memory", "prod", "Cpu", {"DefaultValue": {"Ref": "Size"}}], 10),  # missing second key; resolved
    ],
)
def test_find_in_map(argument: list[Any], expected: Any) -> None:
    assert resolved({"Fn::FindInMap": argument}) == expected


@pytest.mark.parametrize(
    ("argument", "why"),
    [
        (
            ["Memory", "qa", "Size"],
            "Fn::FindInMap [Memory, qa, Size]: Mappings.Memory has no 'qa' (keys: dev, prod)",
        ),
        (["Memory", "prod", "Cpu"], "Fn::FindInMap [Memory, prod, Cpu]: Mappings.Memory.prod has no 'Cpu'"),
        (["Disk", "prod", "Size", {"DefaultValue": 1}], "Mappings has no 'Disk' (keys: Memory)"),
        (["Memory", "prod", "Size", 1], "the fourth argument must be {DefaultValue: value}"),
        (["Memory", "prod"], "Fn::FindInMap takes [map, top-level key, second-level key]"),
    ],
)
def test_find_in_map_errors(argument: list[Any], why: str) -> None:
    assert why in error({"Fn::FindInMap": argument})


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ({"Fn::Base64": {"Fn::Sub": "${Env}!"}}, "cHJvZCE="),
        ({"Fn::GetAZs": ""}, ["eu-west-1a", "eu-west-1b", "eu-west-1c"]),
        ({"Fn::GetAZs": {"Ref": "AWS::Region"}}, ["eu-west-1a", "eu-west-1b", "eu-west-1c"]),
        ({"Fn::GetAZs": "us-east-1"}, ["us-east-1a", "us-east-1b", "us-east-1c"]),
        (
            {
                "Fn::ToJsonString": {
                    "env": {"Ref": "Env"},
                    "sizes": [{"Ref": "Size"}, {"Ref": "AWS::NoValue"}],
                }
            },
            '{"env":"prod","sizes":[10]}',
        ),
    ],
)
def test_base64_get_azs_to_json_string(function: Any, expected: Any) -> None:
    assert resolved(function) == expected


# --- What the engine cannot run ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "why"),
    [
        (
            {"Fn::ImportValue": "shared-queue-arn"},
            "Fn::ImportValue is not supported (cross-stack exports do not exist locally)",
        ),
        (
            {"Fn::Transform": {"Name": "AWS::Include", "Parameters": {"Location": "s3://b/k"}}},
            "Fn::Transform is not supported (macros run only in CloudFormation)",
        ),
        (
            {"Fn::Cidr": ["10.0.0.0/16", 2, 8]},
            "Fn::Cidr is not supported (VPC address blocks mean nothing to the engine)",
        ),
        ({"Fn::Foo": ["x"]}, "Fn::Foo is not supported by the engine"),
    ],
)
def test_unsupported_functions_name_the_resource_path_and_why(function: Any, why: str) -> None:
    fragment = {"Properties": {"EventSourceArn": function}}
    with pytest.raises(TemplateError) as raised:
        resolve(fragment, context(), resource="Mapping")
    failure = raised.value
    assert (failure.resource, failure.path, failure.why) == ("Mapping", "Properties.EventSourceArn", why)
    assert str(failure) == f"Resources.Mapping.Properties.EventSourceArn: {why}"


def test_the_path_of_a_failure_follows_lists_and_nested_functions() -> None:
    fragment = {"Variables": {"ARNS": {"Fn::Join": [",", ["a", {"Fn::ImportValue": "x"}]]}}}
    with pytest.raises(TemplateError) as raised:
        resolve(fragment, context(), resource="Fn", path="Properties.Environment")
    assert raised.value.path == "Properties.Environment.Variables.ARNS[1]"
    assert str(raised.value).startswith(
        "Resources.Fn.Properties.Environment.Variables.ARNS[1]: Fn::ImportValue"
    )


def test_a_template_error_without_a_resource_or_path_is_just_why() -> None:
    assert str(TemplateError(None, "", "bad")) == "bad"
    assert str(TemplateError("Fn", "", "bad")) == "Resources.Fn: bad"


# --- Values as YAML reads them ----------------------------------------------------------------------

YAML_TEMPLATE = """
Parameters:
  PolicyVersion: {Type: String, Default: 2012-10-17}
  Enabled: {Type: String, Default: true, AllowedValues: [true, false]}
  Size: {Type: Number, Default: 10}
Conditions:
  IsLegacyPolicy: {"Fn::Equals": [{Ref: PolicyVersion}, 2012-10-17]}
  IsEnabled: {"Fn::Equals": [{Ref: Enabled}, "true"]}
  IsEnabledToo: {"Fn::Equals": [true, {Ref: Enabled}]}
  IsTen: {"Fn::Equals": [{Ref: Size}, "10"]}
  IsOneAndHalf: {"Fn::Equals": [1.5, "1.5"]}
  IsCapitalTrue: {"Fn::Equals": [true, "True"]}
  IsTenPointZero: {"Fn::Equals": [10, "10.0"]}
Mappings:
  BySize: {10: {Memory: 512}}
  ByDay: {2012-10-17: {Label: launch}}
"""


def yaml_context() -> Context:
    template = yaml.safe_load(YAML_TEMPLATE)
    assert template["Parameters"]["PolicyVersion"]["Default"] == datetime.date(
        2012, 10, 17
    )  # as YAML reads it
    return Context(
        parameters=resolve_parameters(template["Parameters"], {}),
        conditions=template["Conditions"],
        mappings=template["Mappings"],
    )


def test_yaml_read_parameters_are_text() -> None:
    assert yaml_context().parameters == {"PolicyVersion": "2012-10-17", "Enabled": "true", "Size": 10}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("IsLegacyPolicy", True),
        ("IsEnabled", True),
        ("IsEnabledToo", True),
        ("IsTen", True),
        ("IsOneAndHalf", True),
        ("IsCapitalTrue", False),
        ("IsTenPointZero", False),
    ],
)
def test_equals_compares_yaml_values_as_text(name: str, expected: bool) -> None:
    assert evaluate_condition(name, yaml_context()) is expected


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        (
            'Fn::Sub: ["${Day}/${Flag}/${N}/${F}", {Day: 2012-10-17, Flag: true, N: 5, F: 0.5}]',
            "2012-10-17/true/5/0.5",
        ),
        (
            'Fn::Sub: "policy ${PolicyVersion}, enabled ${Enabled}, size ${Size}"',
            "policy 2012-10-17, enabled true, size 10",
        ),
        ('Fn::Join: ["-", [2012-10-17, false, 7]]', "2012-10-17-false-7"),
        ("Fn::FindInMap: [BySize, {Ref: Size}, Memory]", 512),
        ("Fn::FindInMap: [ByDay, {Ref: PolicyVersion}, Label]", "launch"),
        ("Fn::ToJsonString: {Version: 2012-10-17}", '{"Version":"2012-10-17"}'),
    ],
)
def test_yaml_values_are_substituted_as_text(fragment: str, expected: Any) -> None:
    assert resolve(yaml.safe_load(fragment), yaml_context()) == expected
