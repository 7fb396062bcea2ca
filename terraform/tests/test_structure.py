"""Structural tests of the kubetempura Terraform module, run without providers or AWS.

`terraform init/validate` cannot run here (no provider can be downloaded), so these tests read
the HCL with python-hcl2 and check what a reviewer would: the queues are FIFO, encrypted and
redriven; the IAM policies grant exactly the actions the function and the applier need, on
this module's resources only; the function's environment names are the ones the Rust function
reads (parsed from functions/webhook/src/config.rs, so a rename on either side fails here), and
likewise the notifier's (functions/notifier/src/config.rs); the PR feedback resources exist only
with feedback_enabled; with appliers (one webhook, many clusters: fanout.tf) the topic and each
applier's queues, subscription and policy are wired as specified, each applier's policy naming
its own queues only, and the single queue exists only without appliers (or while kept);
every variable and output is described; the examples only use inputs and outputs that exist.
What modules/appliers computes (names, filter policies, alarms) is evaluated by Terraform
itself in test_appliers.py.

Parser note: checkov depends on bc-python-hcl2, a fork that installs the same top-level `hcl2`
package as python-hcl2, so which one `import hcl2` yields depends on install order. The two
serialise differently (the fork wraps attribute values in one-element lists; python-hcl2 >= 5
keeps string quotes and marks blocks with `__is_block__`). `load_tf` normalises both to the
fork's shape with unquoted strings, and everything below goes through `attr` and `blocks`.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import hcl2
import pytest

TF_DIR = Path(__file__).resolve().parent.parent
REPO = TF_DIR.parent
CONFIG_RS = REPO / "functions" / "webhook" / "src" / "config.rs"
RUN_RS = REPO / "applier" / "src" / "run.rs"
APPLIERS_MODULE = TF_DIR / "modules" / "appliers"
NOTIFIER_CONFIG_RS = REPO / "functions" / "notifier" / "src" / "config.rs"
EXAMPLES = {name: TF_DIR / "examples" / name for name in ("gke", "eks", "fanout")}

META_KEYS = {"__is_block__", "__comments__", "__inline_comments__", "__start_line__", "__end_line__"}

# ---------------------------------------------------------------------------------------------
# Loading and normalising


def _unquote(value):
    """A quoted HCL string literal as python-hcl2 >= 5 keeps it ('"abc"') -> 'abc'."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        try:
            return json.loads(value)
        except ValueError:
            return value[1:-1]
    return value


def _is_block(value) -> bool:
    return isinstance(value, dict) and value.get("__is_block__") is True


def _is_labelled(value) -> bool:
    """{'"label"': {..., __is_block__}}: a labelled block in python-hcl2 >= 5."""
    return isinstance(value, dict) and bool(value) and all(
        _is_block(v) or _is_labelled(v) for k, v in value.items() if k not in META_KEYS
    )


def _plain(value):
    """An attribute value: unquote strings and object keys, recursively."""
    if isinstance(value, dict):
        return {_unquote(k): _plain(v) for k, v in value.items() if k not in META_KEYS}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return _unquote(value)


def _body(body: dict) -> dict:
    """A python-hcl2 >= 5 block body -> the fork's shape (attributes in one-element lists)."""
    out = {}
    for key, value in body.items():
        if key in META_KEYS:
            continue
        if isinstance(value, list) and value and all(_is_block(v) or _is_labelled(v) for v in value):
            out[_unquote(key)] = [_block(v) for v in value]
        else:
            out[_unquote(key)] = [_plain(value)]
    return out


def _block(value: dict) -> dict:
    if _is_block(value):
        return _body(value)
    # Labelled: {label: body or deeper label}.
    return {_unquote(k): _block(v) for k, v in value.items() if k not in META_KEYS}


def _strip_meta(value):
    if isinstance(value, dict):
        return {k: _strip_meta(v) for k, v in value.items() if k not in META_KEYS}
    if isinstance(value, list):
        return [_strip_meta(v) for v in value]
    return value


def _has_block_markers(value) -> bool:
    if isinstance(value, dict):
        return "__is_block__" in value or any(_has_block_markers(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_block_markers(v) for v in value)
    return False


def hcl2_file(path: Path) -> dict:
    """One .tf file, normalised like load_tf."""
    with path.open() as handle:
        raw = hcl2.load(handle)
    doc = _body({**raw, "__is_block__": True}) if _has_block_markers(raw) else _strip_meta(raw)
    return {key: list(value) for key, value in doc.items()}


@lru_cache(maxsize=None)
def load_tf(directory: Path) -> dict:
    """All .tf files of a directory merged: {'resource': [...], 'variable': [...], ...}."""
    merged: dict[str, list] = {}
    files = sorted(directory.glob("*.tf"))
    assert files, f"no .tf files in {directory}"
    for path in files:
        for key, value in hcl2_file(path).items():
            merged.setdefault(key, []).extend(value)
    return merged


def attr(body: dict, name: str, default=None):
    """The value of attribute `name` of a block body."""
    value = body.get(name)
    if value is None:
        return default
    assert isinstance(value, list) and len(value) == 1, f"{name} is not an attribute: {value!r}"
    return value[0]


def blocks(body: dict, name: str) -> list[dict]:
    """The nested blocks `name` of a block body."""
    return body.get(name, [])


def labelled(doc: dict, kind: str) -> dict[str, dict]:
    """Top-level blocks of one label: variables, outputs, modules -> {name: body}."""
    out = {}
    for entry in doc.get(kind, []):
        for name, body in entry.items():
            assert name not in out, f"{kind} {name} declared twice"
            out[name] = body
    return out


def typed(doc: dict, kind: str) -> dict[tuple[str, str], dict]:
    """resource/data blocks -> {(type, name): body}."""
    out = {}
    for entry in doc.get(kind, []):
        for rtype, named in entry.items():
            for name, body in named.items():
                out[(rtype, name)] = body
    return out


def local_values(doc: dict) -> dict:
    out = {}
    for entry in doc.get("locals", []):
        for key, value in entry.items():
            out[key] = value[0] if isinstance(value, list) and len(value) == 1 else value
    return out


def norm_expr(text: str) -> str:
    """Normalise the parsers' renderings of an expression: whitespace, None/null, True/true."""
    text = str(text)
    # bc-python-hcl2 quotes nested references ('${var.x}') and strings ('abc') with single quotes.
    text = re.sub(r"'\$\{([^{}']*)\}'", r"\1", text)
    text = re.sub(r"'([^']*)'", r'"\1"', text)
    text = re.sub(r"\bNone\b", "null", text)
    text = re.sub(r"\bTrue\b", "true", text)
    text = re.sub(r"\bFalse\b", "false", text)
    return re.sub(r"\s+", "", text)


def module_doc() -> dict:
    return load_tf(TF_DIR)


def resource(rtype: str, name: str) -> dict:
    found = typed(module_doc(), "resource").get((rtype, name))
    assert found is not None, f"resource {rtype}.{name} is missing"
    return found


def policy_document(name: str) -> dict:
    found = typed(module_doc(), "data").get(("aws_iam_policy_document", name))
    assert found is not None, f"data.aws_iam_policy_document.{name} is missing"
    return found


def statements(document: dict) -> list[dict]:
    """Every statement of a policy document: static ones and the content of dynamic ones."""
    found = list(blocks(document, "statement"))
    for dynamic in blocks(document, "dynamic"):
        for label, body in dynamic.items():
            if label == "statement":
                found.extend(blocks(body, "content"))
    return found


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------------------------------------
# The Rust side: the environment variables the function reads


def rust_env_vars() -> set[str]:
    """Names listed in `pub const ENV_VARS: &[&str] = &[...]` of config.rs, constants resolved."""
    source = CONFIG_RS.read_text()
    consts = dict(re.findall(r'pub\s+const\s+([A-Z0-9_]+)\s*:\s*&(?:\'static\s+)?str\s*=\s*"([^"]+)"\s*;', source))
    match = re.search(r"pub\s+const\s+ENV_VARS\s*:\s*&\[&(?:'static\s+)?str\]\s*=\s*&\[(.*?)\]\s*;", source, re.S)
    assert match, f"ENV_VARS not found in {CONFIG_RS}"
    names = set()
    for item in (part.strip() for part in match.group(1).split(",")):
        if not item:
            continue
        if item.startswith('"'):
            names.add(item.strip('"'))
        else:
            assert item in consts, f"ENV_VARS names {item}, which is not a string constant of config.rs"
            names.add(consts[item])
    assert names, "ENV_VARS is empty"
    return names


def function_env_names() -> set[str]:
    """The environment names the Terraform gives the function (required + optional locals)."""
    function = resource("aws_lambda_function", "webhook")
    (environment,) = blocks(function, "environment")
    assert norm_expr(attr(environment, "variables")) == "${local.function_environment}", (
        "the function's environment must be local.function_environment, where the names are checked"
    )
    values = local_values(module_doc())
    assert norm_expr(values["function_environment"]) == norm_expr(
        "${merge(local.function_environment_required, "
        "{for k, v in local.function_environment_optional : k => v if v != null})}"
    ), "local.function_environment must merge exactly the required and (non-null) optional names"
    required = values["function_environment_required"]
    optional = values["function_environment_optional"]
    assert isinstance(required, dict) and isinstance(optional, dict)
    return set(required) | set(optional)


# ---------------------------------------------------------------------------------------------
# Queues


@pytest.mark.parametrize("name", ["events", "dlq"])
def test_queue_is_fifo_without_content_based_deduplication(name):
    queue = resource("aws_sqs_queue", name)
    assert attr(queue, "fifo_queue") is True
    # The function sets MessageDeduplicationId = X-GitHub-Delivery.
    assert attr(queue, "content_based_deduplication") is False


def test_queue_names_end_in_fifo():
    values = local_values(module_doc())
    assert norm_expr(attr(resource("aws_sqs_queue", "events"), "name")) == "${local.queue_name}"
    assert norm_expr(attr(resource("aws_sqs_queue", "dlq"), "name")) == "${local.dlq_name}"
    assert values["queue_name"].endswith(".fifo")
    assert values["dlq_name"].endswith("-dlq.fifo")


@pytest.mark.parametrize("name", ["events", "dlq"])
def test_queue_is_encrypted_with_sse_sqs_or_the_given_kms_key(name):
    queue = resource("aws_sqs_queue", name)
    assert norm_expr(attr(queue, "kms_master_key_id")) == "${var.kms_key_arn}"
    assert norm_expr(attr(queue, "sqs_managed_sse_enabled")) == "${var.kms_key_arn==null?true:null}"


def test_queue_redrives_to_the_dlq_after_max_receive_count():
    policy = norm_expr(attr(resource("aws_sqs_queue", "events"), "redrive_policy"))
    assert policy.startswith("${jsonencode(")
    assert re.search(r'deadLetterTargetArn"?[=:](\$\{)?aws_sqs_queue\.dlq\[0\]\.arn\b', policy), policy
    assert re.search(r'maxReceiveCount"?[=:](\$\{)?var\.max_receive_count\b', policy), policy


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("max_receive_count", 1, 1000),
        ("visibility_timeout_seconds", 0, 43200),
        ("message_retention_seconds", 60, 1209600),
        ("dlq_message_retention_seconds", 60, 1209600),
        ("lambda_memory_size", 128, 10240),
        ("feedback_max_receive_count", 1, 1000),
        ("notifier_memory_size", 128, 10240),
        ("notifier_timeout", 1, 900),
        ("notifier_batch_size", 1, 10),
    ],
)
def test_numeric_inputs_are_validated_to_the_aws_range(name, low, high):
    variable = labelled(module_doc(), "variable")[name]
    conditions = " ".join(norm_expr(attr(v, "condition")) for v in blocks(variable, "validation"))
    assert re.search(rf"var\.{name}>={low}(?![0-9])", conditions), conditions
    assert re.search(rf"var\.{name}<={high}(?![0-9])", conditions), conditions
    assert low <= attr(variable, "default") <= high


def test_queue_long_polls_and_dlq_outlives_the_queue():
    events = resource("aws_sqs_queue", "events")
    assert attr(events, "receive_wait_time_seconds") == 20
    assert norm_expr(attr(events, "visibility_timeout_seconds")) == "${var.visibility_timeout_seconds}"
    assert norm_expr(attr(events, "message_retention_seconds")) == "${var.message_retention_seconds}"
    dlq = resource("aws_sqs_queue", "dlq")
    assert norm_expr(attr(dlq, "message_retention_seconds")) == "${var.dlq_message_retention_seconds}"
    preconditions = [
        norm_expr(attr(p, "condition"))
        for lifecycle in blocks(events, "lifecycle")
        for p in blocks(lifecycle, "precondition")
    ]
    assert "${var.dlq_message_retention_seconds>var.message_retention_seconds}" in preconditions
    variables = labelled(module_doc(), "variable")
    assert attr(variables["dlq_message_retention_seconds"], "default") > attr(
        variables["message_retention_seconds"], "default"
    )
    assert attr(variables["visibility_timeout_seconds"], "default") >= 60


# ---------------------------------------------------------------------------------------------
# IAM


def _actions_by_resource(document: dict) -> dict[str, set[str]]:
    """{action: set of resources} over the Allow statements of a policy document."""
    found: dict[str, set[str]] = {}
    for statement in statements(document):
        assert attr(statement, "effect", "Allow") == "Allow"
        for action in as_list(attr(statement, "actions", [])):
            found.setdefault(action, set()).update(as_list(attr(statement, "resources", [])))
    return found


def test_function_role_is_attached_to_exactly_the_function_policy():
    role_policy = resource("aws_iam_role_policy", "webhook")
    assert attr(role_policy, "role") == "${aws_iam_role.webhook.id}"
    assert attr(role_policy, "policy") == "${data.aws_iam_policy_document.webhook.json}"
    assert attr(resource("aws_lambda_function", "webhook"), "role") == "${aws_iam_role.webhook.arn}"
    managed = [
        key for key in typed(module_doc(), "resource") if key[0] == "aws_iam_role_policy_attachment"
    ]
    assert managed == [], f"no managed policies on the module's roles: {managed}"


def dynamic_statement(document: dict, sid: str) -> tuple[str, dict]:
    """(normalised for_each, content) of the dynamic statement with this sid."""
    found = [
        (norm_expr(attr(d["statement"], "for_each")), blocks(d["statement"], "content")[0])
        for d in blocks(document, "dynamic")
        if "statement" in d and attr(blocks(d["statement"], "content")[0], "sid") == sid
    ]
    assert len(found) == 1, f"{len(found)} dynamic statements {sid}"
    return found[0]


def test_function_policy_allows_only_send_message_or_publish_secret_and_own_logs():
    document = policy_document("webhook")
    grants = _actions_by_resource(document)
    assert set(grants) <= {
        "sqs:SendMessage",
        "sns:Publish",
        "secretsmanager:GetSecretValue",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "kms:GenerateDataKey",
        "kms:Decrypt",
    }, sorted(grants)
    # The single queue without appliers, the topic with them: never both, never neither.
    send_gate, send = dynamic_statement(document, "SendEvents")
    publish_gate, publish = dynamic_statement(document, "PublishEvents")
    assert send_gate == "${local.fanout_enabled?[]:[aws_sqs_queue.events[0].arn]}"
    assert publish_gate == "${local.fanout_enabled?[aws_sns_topic.events[0].arn]:[]}"
    assert attr(send, "actions") == ["sqs:SendMessage"] and attr(send, "resources") == ["${statement.value}"]
    assert attr(publish, "actions") == ["sns:Publish"] and attr(publish, "resources") == ["${statement.value}"]
    assert grants["sqs:SendMessage"] == {"${statement.value}"}
    assert grants["sns:Publish"] == {"${statement.value}"}
    assert grants["secretsmanager:GetSecretValue"] == {"${local.secret_arn}"}
    assert grants["logs:CreateLogStream"] == {"${aws_cloudwatch_log_group.webhook.arn}:*"}
    assert grants["logs:PutLogEvents"] == {"${aws_cloudwatch_log_group.webhook.arn}:*"}


def test_function_key_grants_follow_where_it_sends():
    document = policy_document("webhook")
    sqs_gate, via_sqs = dynamic_statement(document, "EncryptEventsViaSqs")
    sns_gate, via_sns = dynamic_statement(document, "EncryptEventsViaSns")
    assert sqs_gate == "${var.kms_key_arn==null?[]:local.fanout_enabled?[]:[var.kms_key_arn]}"
    assert sns_gate == "${var.kms_key_arn==null?[]:local.fanout_enabled?[var.kms_key_arn]:[]}"
    for statement, service in [(via_sqs, "sqs"), (via_sns, "sns")]:
        assert sorted(attr(statement, "actions")) == ["kms:Decrypt", "kms:GenerateDataKey"]
        (via,) = [c for c in blocks(statement, "condition") if attr(c, "variable") == "kms:ViaService"]
        assert attr(via, "values") == [f"{service}.${{local.region}}.${{local.dns_suffix}}"]


def test_applier_policy_consumes_one_queue_reads_its_tags_and_its_dlq_retention():
    document = policy_document("applier")
    # One document per queue an applier may consume (test_each_applier_policy_names_only_its_own_queues).
    assert attr(document, "for_each") == "${local.applier_consumers}"
    grants = _actions_by_resource(document)
    consumer = {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    }
    # sqs:SendMessage (and kms:GenerateDataKey) exist only for PR feedback: see
    # test_applier_gets_only_send_message_on_the_feedback_queue.
    assert set(grants) - {"kms:Decrypt", "kms:GenerateDataKey", "sqs:SendMessage"} == consumer | {
        "sqs:GetQueueUrl",
        "sqs:ListQueueTags",
    }, sorted(grants)
    for action in consumer - {"sqs:GetQueueAttributes"}:
        assert grants[action] == {"${each.value.queue_arn}"}, action
    # The queue's kubetempura:* tags: is it an applier's own queue, and whose?
    assert grants["sqs:ListQueueTags"] == {"${each.value.queue_arn}"}
    # At start it reads both queues' message retention (the DLQ found by name from its ARN),
    # and never receives from, deletes from or redrives the dead-letter queue.
    assert grants["sqs:GetQueueAttributes"] == {"${each.value.queue_arn}", "${each.value.dlq_arn}"}
    assert grants["sqs:GetQueueUrl"] == {"${each.value.dlq_arn}"}
    # The role and the (discouraged) user get the single queue's document, and the document of
    # the applier with use_module_identity; nothing else.
    for rtype in ("aws_iam_role_policy", "aws_iam_user_policy"):
        assert attr(resource(rtype, "applier"), "policy") == (
            "${data.aws_iam_policy_document.applier[local.single_queue_key].json}"
        )
        assert attr(resource(rtype, "applier_fanout"), "policy") == (
            "${data.aws_iam_policy_document.applier[local.module_identity_applier].json}"
        )


@pytest.mark.parametrize("document", ["webhook", "applier", "notifier"])
def test_kms_grants_are_only_for_the_given_key_and_only_via_the_service(document):
    for statement in statements(policy_document(document)):
        actions = as_list(attr(statement, "actions", []))
        if not any(a.startswith("kms:") for a in actions):
            continue
        assert all(a.startswith("kms:") for a in actions), actions
        assert attr(statement, "resources") == ["${statement.value}"]
        via = [c for c in blocks(statement, "condition") if attr(c, "variable") == "kms:ViaService"]
        assert via and attr(via[0], "test") == "StringEquals"
    kms_dynamics = 0
    for dynamic in blocks(policy_document(document), "dynamic"):
        (content,) = blocks(dynamic["statement"], "content")
        if not any(a.startswith("kms:") for a in as_list(attr(content, "actions", []))):
            continue
        kms_dynamics += 1
        for_each = norm_expr(attr(dynamic["statement"], "for_each"))
        assert re.search(
            r"(var\.kms_key_arn|local\.secret_kms_key_arn|local\.github_app_secret_kms_key_arn)==null\?\[\]:", for_each
        ), for_each
    assert kms_dynamics >= 1


def _all_policy_statements():
    for (rtype, name), body in typed(module_doc(), "data").items():
        if rtype == "aws_iam_policy_document":
            for statement in statements(body):
                yield name, statement


def test_no_wildcard_actions_or_resources_outside_logs():
    seen = 0
    for name, statement in _all_policy_statements():
        seen += 1
        if attr(statement, "effect", "Allow") != "Allow":
            continue  # Deny statements (TLS only) may be broad.
        actions = as_list(attr(statement, "actions", []))
        for action in actions:
            assert "*" not in action, f"{name}: wildcard action {action}"
        for arn in as_list(attr(statement, "resources", [])):
            if "*" in arn:
                assert set(actions) <= {"logs:CreateLogStream", "logs:PutLogEvents"}, f"{name}: {arn}"
                assert arn in {
                    "${aws_cloudwatch_log_group.webhook.arn}:*",
                    "${aws_cloudwatch_log_group.notifier[0].arn}:*",
                }, f"{name}: {arn}"
        for principals in blocks(statement, "principals"):
            assert "*" not in as_list(attr(principals, "identifiers")), f"{name}: public principal"
    assert seen >= 10
    # No hand-written JSON policies that would escape the checks above.
    for (rtype, name), body in typed(module_doc(), "resource").items():
        for key in ("policy", "assume_role_policy"):
            value = attr(body, key)
            if value is not None:
                # Indexed by a literal, [0], or (per applier) a key the for_each has.
                index = r'(\["[a-z_]+"\]|\[0\]|\[each\.key\]|\[local\.single_queue_key\]|\[local\.module_identity_applier\])'
                assert re.fullmatch(r"\$\{data\.aws_iam_policy_document\.[a-z_]+" + index + r"?\.json\}", value) or (
                    key == "policy" and rtype == "aws_sqs_queue_policy"
                ), f"{rtype}.{name}.{key} must come from an aws_iam_policy_document: {value}"


def test_public_lambda_permissions_are_scoped_to_the_function_url():
    permissions = {
        name: body for (rtype, name), body in typed(module_doc(), "resource").items() if rtype == "aws_lambda_permission"
    }
    assert permissions
    for name, body in permissions.items():
        if attr(body, "principal") != "*":
            continue
        action = attr(body, "action")
        if action == "lambda:InvokeFunctionUrl":
            assert attr(body, "function_url_auth_type") == "NONE", name
        else:
            assert action == "lambda:InvokeFunction" and attr(body, "invoked_via_function_url") is True, name
    api = permissions["api_gateway"]
    assert attr(api, "principal") == "apigateway.amazonaws.com"
    assert attr(api, "source_arn").startswith("${aws_apigatewayv2_api.webhook[0].execution_arn}/")


def test_applier_trust_options_pin_the_service_account():
    trust = policy_document("applier_assume")
    assert not blocks(trust, "statement"), "every trust option is conditional (dynamic)"
    by_sid = {attr(s, "sid"): s for s in statements(trust)}
    assert set(by_sid) == {"EksIrsa", "EksPodIdentity", "OidcWebIdentity"}

    def conditions(statement):
        return {attr(c, "variable"): (attr(c, "test"), attr(c, "values")) for c in blocks(statement, "condition")}

    irsa = by_sid["EksIrsa"]
    assert attr(irsa, "actions") == ["sts:AssumeRoleWithWebIdentity"]
    assert conditions(irsa) == {
        "${local.applier_irsa_issuer}:sub": ("StringEquals", ["${local.applier_k8s_subject}"]),
        "${local.applier_irsa_issuer}:aud": ("StringEquals", ["sts.amazonaws.com"]),
    }

    pod = by_sid["EksPodIdentity"]
    assert sorted(attr(pod, "actions")) == ["sts:AssumeRole", "sts:TagSession"]
    (principal,) = blocks(pod, "principals")
    assert attr(principal, "identifiers") == ["pods.eks.amazonaws.com"]
    assert {
        "aws:RequestTag/eks-cluster-name",
        "aws:RequestTag/kubernetes-namespace",
        "aws:RequestTag/kubernetes-service-account",
    } <= set(conditions(pod))

    oidc = by_sid["OidcWebIdentity"]
    assert attr(oidc, "actions") == ["sts:AssumeRoleWithWebIdentity"]
    assert conditions(oidc) == {
        "${local.applier_oidc_issuer}:sub": ("StringEquals", ["${local.applier_oidc_subject}"]),
        "${local.applier_oidc_issuer}:aud": ("StringEquals", ["${var.applier_oidc_audience}"]),
    }
    assert norm_expr(local_values(module_doc())["applier_k8s_subject"]) == norm_expr(
        "system:serviceaccount:${var.applier_namespace}:${var.applier_service_account}"
    )


def test_applier_iam_user_is_off_by_default_and_its_key_is_sensitive():
    variables = labelled(module_doc(), "variable")
    assert attr(variables["create_applier_user"], "default") is False
    for rtype in ("aws_iam_user", "aws_iam_access_key"):
        assert norm_expr(attr(resource(rtype, "applier"), "count")) == "${var.create_applier_user?1:0}"
    assert norm_expr(attr(resource("aws_iam_user_policy", "applier"), "count")) == (
        "${var.create_applier_user&&local.single_queue?1:0}"
    )
    assert norm_expr(attr(resource("aws_iam_user_policy", "applier_fanout"), "count")) == (
        "${var.create_applier_user&&local.module_identity_applier!=null?1:0}"
    )
    outputs = labelled(module_doc(), "output")
    for name in ("applier_access_key_id", "applier_secret_access_key"):
        assert attr(outputs[name], "sensitive") is True, name


# ---------------------------------------------------------------------------------------------
# The function


def test_function_environment_names_are_read_by_the_rust_function():
    names = function_env_names()
    rust = rust_env_vars()
    assert names <= rust, f"not read by config.rs ENV_VARS: {sorted(names - rust)}"
    assert {"QUEUE_URL", "TOPIC_ARN", "WEBHOOK_SECRET_ARN"} <= names


def test_function_environment_sets_exactly_one_of_queue_url_and_topic_arn():
    values = local_values(module_doc())
    optional = values["function_environment_optional"]
    assert norm_expr(optional["QUEUE_URL"]) == "${local.fanout_enabled?null:aws_sqs_queue.events[0].url}"
    assert norm_expr(optional["TOPIC_ARN"]) == "${local.fanout_enabled?aws_sns_topic.events[0].arn:null}"
    assert norm_expr(values["fanout_enabled"]) == "${length(var.appliers)>0}"
    # Null values are dropped from the environment (function_env_names checks the merge), so
    # the function sees exactly one of the two.
    assert not {"QUEUE_URL", "TOPIC_ARN"} & set(values["function_environment_required"])


def test_function_environment_never_holds_the_plaintext_secret():
    assert "WEBHOOK_SECRET" in rust_env_vars(), "config.rs no longer names WEBHOOK_SECRET: update this test"
    assert "WEBHOOK_SECRET" not in function_env_names()
    values = local_values(module_doc())
    required = values["function_environment_required"]
    assert norm_expr(required["WEBHOOK_SECRET_ARN"]) == "${local.secret_arn}"
    rendered = json.dumps([required, values["function_environment_optional"]])
    assert "random_password" not in rendered and "secret_string" not in rendered


def test_max_body_bytes_is_omitted_when_null():
    optional = local_values(module_doc())["function_environment_optional"]
    assert norm_expr(optional["MAX_BODY_BYTES"]) == "${var.max_body_bytes==null?null:tostring(var.max_body_bytes)}"


def test_function_is_a_provided_al2023_bootstrap_sized_for_a_webhook():
    function = resource("aws_lambda_function", "webhook")
    assert attr(function, "runtime") == "provided.al2023"
    assert attr(function, "handler") == "bootstrap"
    assert attr(function, "architectures") == ["${var.lambda_architecture}"]
    assert attr(function, "filename") == "${local.lambda_zip_path}"
    assert "filebase64sha256(local.lambda_zip_path)" in norm_expr(attr(function, "source_code_hash"))
    (logging,) = blocks(function, "logging_config")
    assert attr(logging, "log_format") == "JSON"
    assert attr(logging, "log_group") == "${aws_cloudwatch_log_group.webhook.name}"

    variables = labelled(module_doc(), "variable")
    assert attr(variables["lambda_architecture"], "default") == "arm64"
    arch_check = norm_expr(attr(blocks(variables["lambda_architecture"], "validation")[0], "condition"))
    assert '"arm64"' in arch_check and '"x86_64"' in arch_check
    assert 128 <= attr(variables["lambda_memory_size"], "default") <= 256
    assert attr(variables["lambda_timeout"], "default") <= 10
    assert attr(variables["lambda_zip_path"], "default") is None
    assert "${path.module}/../target/lambda/webhook/bootstrap.zip" in local_values(module_doc())["lambda_zip_path"]

    log_group = resource("aws_cloudwatch_log_group", "webhook")
    assert attr(log_group, "name") == "/aws/lambda/${local.function_name}"
    assert attr(log_group, "retention_in_days") == "${var.log_retention_days}"


def test_function_url_is_public_only_with_a_reasoned_checkov_skip():
    url = resource("aws_lambda_function_url", "webhook")
    assert attr(url, "authorization_type") == "NONE"
    source = (TF_DIR / "lambda.tf").read_text()
    block = source[source.index('resource "aws_lambda_function_url" "webhook"') :]
    block = block[: block.index("\n}\n")]
    assert re.search(r"#checkov:skip=CKV_AWS_258:.*sign", block), "the NONE auth type needs its reason inline"


def test_every_checkov_skip_carries_a_reason():
    skips = 0
    for path in sorted(TF_DIR.rglob("*.tf")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "checkov:skip" in line:
                skips += 1
                assert re.search(r"#checkov:skip=CKV2?_AWS_\d+:\s*\S.{20,}", line), f"{path}:{number}: {line.strip()}"
    assert skips > 0


# ---------------------------------------------------------------------------------------------
# Variables and outputs


def test_every_variable_has_a_type_and_a_description():
    variables = labelled(module_doc(), "variable")
    assert len(variables) > 20
    for name, body in variables.items():
        assert attr(body, "type"), f"variable {name} has no type"
        assert len(attr(body, "description", "")) >= 20, f"variable {name} has no real description"


def test_every_output_has_a_description():
    outputs = labelled(module_doc(), "output")
    for name, body in outputs.items():
        assert len(attr(body, "description", "")) >= 20, f"output {name} has no real description"
    required = {
        "webhook_url",
        "queue_url",
        "queue_arn",
        "dlq_url",
        "dlq_arn",
        "applier_role_arn",
        "webhook_secret_arn",
        "webhook_secret",
        "applier_access_key_id",
        "applier_secret_access_key",
    }
    assert required <= set(outputs), sorted(required - set(outputs))
    assert attr(outputs["webhook_secret"], "sensitive") is True


@pytest.mark.parametrize(
    "name",
    [
        "name",
        "queue_name",
        "kms_key_arn",
        "log_kms_key_arn",
        "webhook_secret_arn",
        "webhook_secret_kms_key_arn",
        "applier_irsa_oidc_provider_arn",
        "applier_oidc_issuer_url",
        "alarm_sns_topic_arn",
        "iam_permissions_boundary_arn",
        "max_receive_count",
        "visibility_timeout_seconds",
        "message_retention_seconds",
        "dlq_message_retention_seconds",
        "log_retention_days",
        "lambda_architecture",
        "lambda_memory_size",
        "lambda_timeout",
        "endpoint_type",
        "feedback_queue_name",
        "feedback_visibility_timeout_seconds",
        "notifier_zip_path",
        "notifier_reserved_concurrency",
        "notifier_maximum_concurrency",
        "notifier_rust_log",
        "github_api_url",
        "github_app_secret_arn",
        "github_app_secret_kms_key_arn",
        "feedback_queue_age_alarm_threshold_seconds",
    ],
)
def test_names_arns_and_ranges_are_validated(name):
    variable = labelled(module_doc(), "variable")[name]
    validations = blocks(variable, "validation")
    assert validations, f"variable {name} has no validation"
    for validation in validations:
        assert f"var.{name}" in attr(validation, "condition")
        assert attr(validation, "error_message")


def test_queue_name_variable_takes_a_base_name():
    condition = attr(blocks(labelled(module_doc(), "variable")["queue_name"], "validation")[0], "condition")
    pattern = re.search(r'regex\(\\?"(.+?)\\?",', condition.replace("'", '"')).group(1).replace("\\\\", "\\")
    assert re.fullmatch(pattern, "kubetempura-events")
    assert not re.fullmatch(pattern, "kubetempura-events.fifo")
    assert not re.fullmatch(pattern, "x" * 72)


def test_log_retention_is_one_of_cloudwatchs_values():
    condition = norm_expr(attr(blocks(labelled(module_doc(), "variable")["log_retention_days"], "validation")[0], "condition"))
    allowed = {int(n) for n in re.search(r"contains\(\[([0-9,]+)\]", condition).group(1).split(",")}
    assert allowed - {0} == {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}


# ---------------------------------------------------------------------------------------------
# Alarms


def test_alarms_watch_the_dlq_and_function_errors_and_notify_the_topic_when_given():
    dlq = resource("aws_cloudwatch_metric_alarm", "dlq_not_empty")
    assert attr(dlq, "metric_name") == "ApproximateNumberOfMessagesVisible"
    assert attr(dlq, "dimensions") == {"QueueName": "${aws_sqs_queue.dlq[0].name}"}
    errors = resource("aws_cloudwatch_metric_alarm", "function_errors")
    assert attr(errors, "metric_name") == "Errors"
    assert attr(errors, "dimensions") == {"FunctionName": "${aws_lambda_function.webhook.function_name}"}
    for alarm in (dlq, errors):
        assert attr(alarm, "comparison_operator") == "GreaterThanThreshold"
        assert attr(alarm, "threshold") == 0
        assert attr(alarm, "alarm_actions") == "${local.alarm_actions}"
    assert norm_expr(local_values(module_doc())["alarm_actions"]) == (
        "${var.alarm_sns_topic_arn==null?[]:[var.alarm_sns_topic_arn]}"
    )


# ---------------------------------------------------------------------------------------------
# PR feedback: the feedback queue, the notifier, the GitHub App secret (feedback.tf, notifier.tf)

FEEDBACK_FILES = ("feedback.tf", "notifier.tf")
# The names the notifier crate reads (functions/notifier/src/config.rs); authoritative.
NOTIFIER_ENV = {"GITHUB_APP_SECRET_ARN", "FEEDBACK_QUEUE_URL", "GITHUB_API_URL", "RUST_LOG"}
FEEDBACK_OUTPUTS = {
    "feedback_queue_url",
    "feedback_queue_arn",
    "feedback_dlq_url",
    "feedback_dlq_arn",
    "notifier_function_name",
    "notifier_function_arn",
    "notifier_log_group_name",
    "github_app_secret_arn",
    "applier_feedback_run_flag",
}


def rust_env_consts(source: str) -> dict[str, str]:
    """`pub const ENV_X: &str = "NAME";` constants of a config.rs -> {ENV_X: NAME}."""
    return dict(re.findall(r'pub\s+const\s+(ENV_[A-Z0-9_]+)\s*:\s*&(?:\'static\s+)?str\s*=\s*"([^"]+)"\s*;', source))


def bare(value) -> str:
    """An expression without interpolation markers, quotes, braces or parentheses: the two parsers
    render nested references and grouping differently."""
    return re.sub(r'[${}()"]', "", norm_expr(json.dumps(value) if isinstance(value, dict) else value))


def _gate(body: dict) -> str:
    return norm_expr(attr(body, "count", "") or attr(body, "for_each", ""))


def _gated_by_feedback(body: dict) -> bool:
    gate = _gate(body)
    if gate == "${var.feedback_enabled?1:0}":
        return True
    if gate == "${local.create_github_app_secret?1:0}":
        return norm_expr(local_values(module_doc())["create_github_app_secret"]).startswith("${var.feedback_enabled&&")
    return False


def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def test_parser_of_notifier_env_constants_reads_each_constant():
    sample = (
        '/// doc\npub const ENV_GITHUB_API_URL: &str = "GITHUB_API_URL";\n'
        "pub const ENV_RUST_LOG: &'static str = \"RUST_LOG\";\n"
        'pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";\n'
    )
    assert rust_env_consts(sample) == {"ENV_GITHUB_API_URL": "GITHUB_API_URL", "ENV_RUST_LOG": "RUST_LOG"}


@pytest.mark.parametrize("file", FEEDBACK_FILES)
def test_every_feedback_resource_exists_only_with_feedback_enabled(file):
    doc = hcl2_file(TF_DIR / file)
    found = 0
    for kind in ("resource", "data"):
        for (rtype, name), body in typed(doc, kind).items():
            found += 1
            assert _gated_by_feedback(body), f"{kind} {rtype}.{name} in {file} is not gated by feedback_enabled: {_gate(body)}"
    assert found >= 5


def test_feedback_resources_are_referenced_only_where_feedback_is_enabled():
    """A `[0]` of a gated resource outside a gated block must sit in a `var.feedback_enabled ?`
    conditional, or the module fails to plan with feedback_enabled = false."""
    doc = module_doc()
    gated = {
        f"{'data.' if kind == 'data' else ''}{rtype}.{name}"
        for kind in ("resource", "data")
        for (rtype, name), body in typed(doc, kind).items()
        if _gated_by_feedback(body)
    }
    assert {"aws_sqs_queue.feedback", "aws_lambda_function.notifier", "aws_secretsmanager_secret.github_app"} <= gated
    alarms = resource("aws_cloudwatch_metric_alarm", "feedback")
    assert _gate(alarms) == "${var.create_alarms&&var.feedback_enabled?local.feedback_alarms:{}}"
    reference = re.compile(r"(?<![\w.])(" + "|".join(re.escape(g) for g in sorted(gated)) + r")\[")
    places = [(f"{k} {n}", b) for k in ("resource", "data") for (_, n), b in typed(doc, k).items() if not _gated_by_feedback(b)]
    places += [(f"output {n}", b) for n, b in labelled(doc, "output").items()]
    places += [(f"local {n}", v) for n, v in local_values(doc).items()]
    guarded = 0
    for where, body in places:
        for text in _strings(body):
            if reference.search(text):
                assert "var.feedback_enabled?" in norm_expr(text), f"{where}: unguarded {text}"
                guarded += 1
    assert guarded >= 5


def test_feedback_outputs_exist_and_are_null_when_feedback_is_off():
    outputs = labelled(module_doc(), "output")
    assert FEEDBACK_OUTPUTS <= set(outputs), sorted(FEEDBACK_OUTPUTS - set(outputs))
    for name in FEEDBACK_OUTPUTS:
        value = norm_expr(attr(outputs[name], "value"))
        assert re.fullmatch(r"\$\{var\.feedback_enabled\?.+:null\}", value), f"{name}: {value}"
    assert norm_expr(attr(outputs["applier_feedback_run_flag"], "value")) == (
        '${var.feedback_enabled?"--feedback-queue-url=${aws_sqs_queue.feedback[0].url}":null}'
    )
    assert attr(labelled(module_doc(), "variable")["feedback_enabled"], "default") is True


@pytest.mark.parametrize("name", ["feedback", "feedback_dlq"])
def test_feedback_queue_is_high_throughput_fifo_and_encrypted(name):
    queue = resource("aws_sqs_queue", name)
    assert attr(queue, "fifo_queue") is True
    # The applier sets MessageDeduplicationId; an id is reused only within its PR's group.
    assert attr(queue, "content_based_deduplication") is False
    assert attr(queue, "deduplication_scope") == "messageGroup"
    assert attr(queue, "fifo_throughput_limit") == "perMessageGroupId"
    assert norm_expr(attr(queue, "kms_master_key_id")) == "${var.kms_key_arn}"
    assert norm_expr(attr(queue, "sqs_managed_sse_enabled")) == "${var.kms_key_arn==null?true:null}"
    values = local_values(module_doc())
    suffix = {"feedback": "feedback_queue_name", "feedback_dlq": "feedback_dlq_name"}[name]
    assert norm_expr(attr(queue, "name")) == f"${{local.{suffix}}}"
    assert values[suffix].endswith(".fifo")


def test_feedback_queue_redrives_to_its_dlq_after_feedback_max_receive_count():
    queue = resource("aws_sqs_queue", "feedback")
    policy = norm_expr(attr(queue, "redrive_policy"))
    assert re.search(r'deadLetterTargetArn"?[=:](\$\{)?aws_sqs_queue\.feedback_dlq\[0\]\.arn\b', policy), policy
    assert re.search(r'maxReceiveCount"?[=:](\$\{)?var\.feedback_max_receive_count\b', policy), policy
    allow = norm_expr(attr(resource("aws_sqs_queue_redrive_allow_policy", "feedback_dlq"), "redrive_allow_policy"))
    assert "aws_sqs_queue.feedback[0].arn" in allow and "byQueue" in allow
    assert norm_expr(attr(queue, "message_retention_seconds")) == "${var.message_retention_seconds}"
    dlq = resource("aws_sqs_queue", "feedback_dlq")
    assert norm_expr(attr(dlq, "message_retention_seconds")) == "${var.dlq_message_retention_seconds}"
    tls = norm_expr(attr(typed(module_doc(), "data")[("aws_iam_policy_document", "queue_tls_only")], "for_each"))
    assert tls.startswith("${merge(") and "var.feedback_enabled?" in tls, tls
    for key in ("feedback", "feedback_dlq"):
        assert re.search(rf'"?{key}"?[=:]aws_sqs_queue\.{key}\[0\]\.arn', tls), tls
    for name in ("feedback", "feedback_dlq"):
        policy = attr(resource("aws_sqs_queue_policy", name), "policy")
        assert policy == f'${{data.aws_iam_policy_document.queue_tls_only["{name}"].json}}'


def test_feedback_visibility_timeout_is_at_least_six_times_the_notifier_timeout():
    queue = resource("aws_sqs_queue", "feedback")
    assert norm_expr(attr(queue, "visibility_timeout_seconds")) == "${local.feedback_visibility_timeout_seconds}"
    assert norm_expr(local_values(module_doc())["feedback_visibility_timeout_seconds"]) == (
        "${coalesce(var.feedback_visibility_timeout_seconds,6*var.notifier_timeout)}"
    )
    preconditions = [
        norm_expr(attr(p, "condition")) for lifecycle in blocks(queue, "lifecycle") for p in blocks(lifecycle, "precondition")
    ]
    assert "${local.feedback_visibility_timeout_seconds>=6*var.notifier_timeout}" in preconditions
    assert "${local.feedback_visibility_timeout_seconds<=43200}" in preconditions
    function = resource("aws_lambda_function", "notifier")
    assert norm_expr(attr(function, "timeout")) == "${var.notifier_timeout}"
    default = attr(labelled(module_doc(), "variable")["notifier_timeout"], "default")
    assert 6 * default <= 43200


def test_event_source_mapping_reads_the_feedback_queue_and_reports_batch_item_failures():
    mapping = resource("aws_lambda_event_source_mapping", "notifier")
    assert attr(mapping, "event_source_arn") == "${aws_sqs_queue.feedback[0].arn}"
    assert attr(mapping, "function_name") == "${aws_lambda_function.notifier[0].arn}"
    assert attr(mapping, "function_response_types") == ["ReportBatchItemFailures"]
    assert norm_expr(attr(mapping, "batch_size")) == "${var.notifier_batch_size}"
    assert attr(labelled(module_doc(), "variable")["notifier_batch_size"], "default") == 10
    (scaling,) = [d["scaling_config"] for d in blocks(mapping, "dynamic") if "scaling_config" in d]
    assert norm_expr(attr(scaling, "for_each")) == (
        "${var.notifier_maximum_concurrency==null?[]:[var.notifier_maximum_concurrency]}"
    )
    assert "${aws_iam_role_policy.notifier}" in attr(mapping, "depends_on")


def test_notifier_policy_is_limited_to_the_feedback_queue_and_the_app_secret():
    grants = _actions_by_resource(policy_document("notifier"))
    consumer = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}
    assert set(grants) == consumer | {
        "secretsmanager:GetSecretValue",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "kms:Decrypt",
    }, sorted(grants)
    for action in consumer:
        assert grants[action] == {"${aws_sqs_queue.feedback[0].arn}"}, action
    assert grants["secretsmanager:GetSecretValue"] == {"${local.github_app_secret_arn}"}
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        assert grants[action] == {"${aws_cloudwatch_log_group.notifier[0].arn}:*"}
    assert grants["kms:Decrypt"] == {"${statement.value}"}
    assert attr(resource("aws_iam_role_policy", "notifier"), "policy") == "${data.aws_iam_policy_document.notifier[0].json}"
    assert attr(resource("aws_iam_role_policy", "notifier"), "role") == "${aws_iam_role.notifier[0].id}"
    assert attr(resource("aws_lambda_function", "notifier"), "role") == "${aws_iam_role.notifier[0].arn}"
    secret_arn = norm_expr(local_values(module_doc())["github_app_secret_arn"])
    assert "aws_secretsmanager_secret.github_app[0].arn" in secret_arn and "var.github_app_secret_arn" in secret_arn


def test_applier_gets_only_send_message_on_the_feedback_queue():
    document = policy_document("applier")
    sends = [s for s in statements(document) if "sqs:SendMessage" in as_list(attr(s, "actions", []))]
    assert len(sends) == 1
    assert attr(sends[0], "actions") == ["sqs:SendMessage"]
    (dynamic,) = [d["statement"] for d in blocks(document, "dynamic") if blocks(d["statement"], "content")[0] is sends[0]]
    assert norm_expr(attr(dynamic, "for_each")) == "${var.feedback_enabled?[aws_sqs_queue.feedback[0].arn]:[]}"
    assert attr(sends[0], "resources") == ["${statement.value}"]
    # Nothing else new: kms:GenerateDataKey only with a customer managed key AND feedback (a
    # producer needs a data key), via SQS.
    grants = _actions_by_resource(document)
    assert "sqs:SendMessage" in grants and not any(
        "feedback" in r for a, rs in grants.items() if a != "sqs:SendMessage" for r in rs
    )
    encrypt = [s for s in statements(document) if "kms:GenerateDataKey" in as_list(attr(s, "actions", []))]
    assert [attr(s, "actions") for s in encrypt] == [["kms:GenerateDataKey"]]
    (kms_dynamic,) = [d["statement"] for d in blocks(document, "dynamic") if blocks(d["statement"], "content")[0] is encrypt[0]]
    assert bare(attr(kms_dynamic, "for_each")) == "var.kms_key_arn==null?[]:var.feedback_enabled?[var.kms_key_arn]:[]"


def test_notifier_is_a_provided_al2023_bootstrap_with_json_logs():
    function = resource("aws_lambda_function", "notifier")
    assert attr(function, "runtime") == "provided.al2023"
    assert attr(function, "handler") == "bootstrap"
    assert attr(function, "architectures") == ["${var.lambda_architecture}"]
    assert attr(function, "filename") == "${local.notifier_zip_path}"
    assert "filebase64sha256(local.notifier_zip_path)" in norm_expr(attr(function, "source_code_hash"))
    assert "${path.module}/../target/lambda/notifier/bootstrap.zip" in local_values(module_doc())["notifier_zip_path"]
    assert norm_expr(attr(function, "reserved_concurrent_executions")) == (
        "${var.notifier_reserved_concurrency==null?-1:var.notifier_reserved_concurrency}"
    )
    (logging,) = blocks(function, "logging_config")
    assert attr(logging, "log_format") == "JSON"
    assert attr(logging, "log_group") == "${aws_cloudwatch_log_group.notifier[0].name}"
    assert attr(logging, "application_log_level") == "${var.log_level}"
    log_group = resource("aws_cloudwatch_log_group", "notifier")
    assert attr(log_group, "name") == "/aws/lambda/${local.notifier_function_name}"
    assert attr(log_group, "retention_in_days") == "${var.log_retention_days}"
    assert attr(log_group, "kms_key_id") == "${var.log_kms_key_arn}"


def notifier_env() -> dict:
    (environment,) = blocks(resource("aws_lambda_function", "notifier"), "environment")
    assert norm_expr(attr(environment, "variables")) == "${local.notifier_environment}"
    env = local_values(module_doc())["notifier_environment"]
    assert isinstance(env, dict), env
    return env


def test_notifier_environment_is_exactly_the_names_the_notifier_reads():
    env = notifier_env()
    assert set(env) == NOTIFIER_ENV
    assert norm_expr(env["GITHUB_APP_SECRET_ARN"]) == "${local.github_app_secret_arn}"
    assert norm_expr(env["FEEDBACK_QUEUE_URL"]) == "${var.feedback_enabled?aws_sqs_queue.feedback[0].url:null}"
    assert norm_expr(env["GITHUB_API_URL"]) == "${var.github_api_url}"
    assert norm_expr(env["RUST_LOG"]) == "${var.notifier_rust_log}"
    assert "privateKey" not in json.dumps(env) and "secret_string" not in json.dumps(env)


def test_notifier_environment_names_are_constants_of_the_notifier_config():
    if not NOTIFIER_CONFIG_RS.is_file():
        pytest.skip(f"{NOTIFIER_CONFIG_RS.relative_to(REPO)} is absent on this branch (the notifier crate is written in parallel); compared once it is merged")
    names = set(rust_env_consts(NOTIFIER_CONFIG_RS.read_text()).values())
    assert names, f"no `pub const ENV_...: &str` in {NOTIFIER_CONFIG_RS}"
    # RUST_LOG is read by the tracing subscriber's EnvFilter, not by config.rs.
    given = set(notifier_env()) - {"RUST_LOG"}
    assert given <= names, f"not read by notifier config.rs: {sorted(given - names)}"
    # Names the notifier reads that Terraform does not set must be Lambda's own (set through
    # logging_config) or optional local-only ones; NOTIFIER_ENV must all be read.
    assert NOTIFIER_ENV - {"RUST_LOG"} <= names, sorted(NOTIFIER_ENV - names)


def test_github_app_secret_is_created_empty_and_encrypted_like_the_webhook_secret():
    secret = resource("aws_secretsmanager_secret", "github_app")
    assert norm_expr(attr(secret, "kms_key_id")) == "${var.kms_key_arn}"
    assert norm_expr(attr(secret, "recovery_window_in_days")) == "${var.secret_recovery_window_days}"
    versions = [
        name for (rtype, name), body in typed(module_doc(), "resource").items()
        if rtype == "aws_secretsmanager_secret_version" and "github_app" in json.dumps(body)
    ]
    assert versions == [], "the App's private key must never pass through Terraform"
    assert norm_expr(local_values(module_doc())["create_github_app_secret"]) == (
        "${var.feedback_enabled&&var.github_app_secret_arn==null}"
    )


def test_github_api_url_accepts_github_and_enterprise_server_urls_only():
    condition = attr(blocks(labelled(module_doc(), "variable")["github_api_url"], "validation")[0], "condition")
    pattern = re.search(r'regex\(\\?"(.+?)\\?",\s*var', condition.replace("'", '"')).group(1).replace("\\\\", "\\")
    assert attr(labelled(module_doc(), "variable")["github_api_url"], "default") == "https://api.github.com"
    for good in ("https://api.github.com", "https://ghe.example.com/api/v3", "https://ghe.example.com:8443/api/v3"):
        assert re.fullmatch(pattern, good), good
    for bad in ("http://api.github.com", "https://api.github.com/", "api.github.com", "https://ghe/api/v3?x=1"):
        assert not re.fullmatch(pattern, bad), bad


def test_feedback_alarms_watch_the_dlq_age_errors_and_throttles():
    alarm = resource("aws_cloudwatch_metric_alarm", "feedback")
    assert attr(alarm, "alarm_actions") == "${local.alarm_actions}"
    assert attr(alarm, "ok_actions") == "${local.alarm_actions}"
    assert attr(alarm, "comparison_operator") == "GreaterThanThreshold"
    specs = local_values(module_doc())["feedback_alarms"]
    metrics = {key: (spec["metric"], bare(spec["dimensions"])) for key, spec in specs.items()}
    assert metrics == {
        "feedback_dlq_not_empty": ("ApproximateNumberOfMessagesVisible", "QueueName:local.feedback_dlq_name"),
        "feedback_queue_oldest_event": ("ApproximateAgeOfOldestMessage", "QueueName:local.feedback_queue_name"),
        "notifier_errors": ("Errors", "FunctionName:local.notifier_function_name"),
        "notifier_throttles": ("Throttles", "FunctionName:local.notifier_function_name"),
    }, metrics
    assert bare(specs["feedback_queue_oldest_event"]["threshold"]) == "var.feedback_queue_age_alarm_threshold_seconds"


# ---------------------------------------------------------------------------------------------
# One webhook, many clusters (fanout.tf, modules/appliers; what the module computes is evaluated
# in test_appliers.py)

SINGLE_QUEUE_RESOURCES = [
    ("aws_sqs_queue", "events"),
    ("aws_sqs_queue", "dlq"),
    ("aws_sqs_queue_redrive_allow_policy", "dlq"),
    ("aws_sqs_queue_policy", "events"),
    ("aws_sqs_queue_policy", "dlq"),
]
APPLIER_RESOURCES = [
    ("aws_sqs_queue", "applier"),
    ("aws_sqs_queue", "applier_dlq"),
    ("aws_sqs_queue_redrive_allow_policy", "applier_dlq"),
    ("aws_sqs_queue_policy", "applier"),
    ("aws_sqs_queue_policy", "applier_dlq"),
    ("aws_sns_topic_subscription", "applier"),
    ("aws_iam_policy", "applier"),
]


def test_without_appliers_the_single_queue_exists_and_no_topic():
    variables = labelled(module_doc(), "variable")
    assert attr(variables["appliers"], "default") == {}
    assert attr(variables["keep_single_queue"], "default") is False
    values = local_values(module_doc())
    assert norm_expr(values["fanout_enabled"]) == "${length(var.appliers)>0}"
    assert norm_expr(values["single_queue"]) == "${!local.fanout_enabled||var.keep_single_queue}"
    for rtype, name in SINGLE_QUEUE_RESOURCES:
        assert norm_expr(attr(resource(rtype, name), "count")) == "${local.single_queue?1:0}", f"{rtype}.{name}"
    for name in ("dlq_not_empty", "queue_oldest_event"):
        assert norm_expr(attr(resource("aws_cloudwatch_metric_alarm", name), "count")) == (
            "${var.create_alarms&&local.single_queue?1:0}"
        )
    assert norm_expr(attr(resource("aws_iam_role_policy", "applier"), "count")) == (
        "${local.create_applier_role&&local.single_queue?1:0}"
    )
    for rtype, name in [("aws_sns_topic", "events"), ("aws_sns_topic_policy", "events")]:
        assert norm_expr(attr(resource(rtype, name), "count")) == "${local.fanout_enabled?1:0}", f"{rtype}.{name}"
    # Per-applier resources: one per entry of var.appliers, through the module's output.
    for rtype, name in APPLIER_RESOURCES:
        assert attr(resource(rtype, name), "for_each") == "${local.appliers}", f"{rtype}.{name}"
    assert local_values(module_doc())["appliers"] == "${module.appliers.appliers}"


def test_moved_blocks_keep_the_single_queue_where_it_was():
    moves = {(attr(m, "from"), attr(m, "to")) for m in module_doc().get("moved", [])}
    expected = {(f"${{{rtype}.{name}}}", f"${{{rtype}.{name}[0]}}") for rtype, name in SINGLE_QUEUE_RESOURCES}
    assert moves == expected, sorted(moves ^ expected)
    # And every resource counted by local.single_queue alone is among them: a counted resource
    # without a move would be destroyed and created again (with the queue's events lost).
    counted = {
        key for key, body in typed(module_doc(), "resource").items() if norm_expr(attr(body, "count", "")) == "${local.single_queue?1:0}"
    }
    assert counted == set(SINGLE_QUEUE_RESOURCES)


def _declared_iteration() -> dict[str, str]:
    """'aws_x.name' / 'data.aws_x.name' -> 'count', 'for_each' or 'single'."""
    found = {}
    for kind in ("resource", "data"):
        for (rtype, name), body in typed(module_doc(), kind).items():
            address = f"{'data.' if kind == 'data' else ''}{rtype}.{name}"
            found[address] = "count" if "count" in body else "for_each" if "for_each" in body else "single"
    return found


def test_references_index_counted_and_for_each_resources_and_only_those():
    """No `terraform validate` here: this catches a reference that misses the [0] of a resource
    that became counted (or has one it should not), which plan would refuse."""
    declared = _declared_iteration()
    reference = re.compile(r"(?<![\w.])((?:data\.)?aws_[a-z0-9_]+\.[a-z0-9_]+)(\[[^\]]*\])?(\.)?")
    places = [(f"{k} {n}", b) for k in ("resource", "data") for (_, n), b in typed(module_doc(), k).items()]
    places += [(f"output {n}", b) for n, b in labelled(module_doc(), "output").items()]
    places += [(f"local {n}", v) for n, v in local_values(module_doc()).items()]
    places += [(f"module {n}", b) for n, b in labelled(module_doc(), "module").items()]
    checked = 0
    for where, body in places:
        for text in _strings(body):
            for address, index, dot in reference.findall(norm_expr(text)):
                if address not in declared:
                    continue
                checked += 1
                iteration = declared[address]
                if iteration == "single":
                    assert not index, f"{where}: {address}{index} indexes a resource without count or for_each"
                elif dot:
                    assert index, f"{where}: {address}.… misses the index of a {iteration} resource"
                if iteration == "for_each":
                    assert index != "[0]", f"{where}: {address}[0] on a for_each resource"
                if iteration == "count" and index:
                    assert index == "[0]", f"{where}: {address}{index}"
    assert checked > 100


def _guarded(gate_markers: tuple[str, ...], addresses: set[str], is_gated) -> int:
    """Count references to these counted resources outside bodies gated like them, asserting
    each sits in a conditional on one of the markers (the same pattern as the feedback test)."""
    doc = module_doc()
    reference = re.compile(r"(?<![\w.])(" + "|".join(re.escape(a) for a in sorted(addresses)) + r")\[")
    places = [(f"{k} {n}", b) for k in ("resource", "data") for (_, n), b in typed(doc, k).items() if not is_gated(b)]
    places += [(f"output {n}", b) for n, b in labelled(doc, "output").items()]
    places += [(f"local {n}", v) for n, v in local_values(doc).items()]
    guarded = 0
    for where, body in places:
        for text in _strings(body):
            if reference.search(text):
                assert any(marker in norm_expr(text) for marker in gate_markers), f"{where}: unguarded {text}"
                guarded += 1
    return guarded


def test_single_queue_references_sit_behind_its_condition():
    def gated(body):
        return re.fullmatch(r"\$\{(.*&&)?local\.single_queue\?1:0\}", _gate(body)) is not None

    addresses = {f"{rtype}.{name}" for rtype, name in SINGLE_QUEUE_RESOURCES}
    # local.fanout_enabled false implies local.single_queue.
    assert _guarded(("local.single_queue?", "local.fanout_enabled?"), addresses, gated) >= 6


def test_topic_references_sit_behind_appliers():
    def gated(body):
        gate = _gate(body)
        return gate in {"${local.appliers}", "${module.appliers.alarms}"} or re.fullmatch(
            r"\$\{(.*&&)?local\.fanout_enabled\?1:0\}", gate
        ) is not None

    addresses = {"aws_sns_topic.events", "data.aws_iam_policy_document.topic"}
    assert _guarded(("local.fanout_enabled?",), addresses, gated) >= 3


def test_topic_is_fifo_without_content_based_deduplication_and_encrypted_like_the_queues():
    topic = resource("aws_sns_topic", "events")
    assert attr(topic, "fifo_topic") is True
    # The function sets the deduplication id (X-GitHub-Delivery), as for the queues.
    assert attr(topic, "content_based_deduplication") is False
    assert norm_expr(attr(topic, "fifo_throughput_scope")) == '${var.high_throughput_fifo?"MessageGroup":"Topic"}'
    # The customer managed key when given; SNS's AWS managed key otherwise (never unencrypted).
    assert norm_expr(attr(topic, "kms_master_key_id")) == '${coalesce(var.kms_key_arn,"alias/aws/sns")}'
    assert attr(topic, "name") == "${local.topic_name}"
    assert local_values(module_doc())["topic_name"].endswith(".fifo")


def test_topic_policy_lets_only_the_function_role_publish_and_only_over_tls():
    document = policy_document("topic")
    by_sid = {attr(s, "sid"): s for s in statements(document)}
    assert set(by_sid) == {"PublishFromWebhookFunction", "DenyPublishByOthers", "DenyInsecureTransport"}
    allow = by_sid["PublishFromWebhookFunction"]
    assert attr(allow, "effect", "Allow") == "Allow" and attr(allow, "actions") == ["sns:Publish"]
    (principal,) = blocks(allow, "principals")
    assert (attr(principal, "type"), attr(principal, "identifiers")) == ("AWS", ["${aws_iam_role.webhook.arn}"])
    deny = by_sid["DenyPublishByOthers"]
    assert attr(deny, "effect") == "Deny" and attr(deny, "actions") == ["sns:Publish"]
    (condition,) = blocks(deny, "condition")
    assert (attr(condition, "test"), attr(condition, "variable"), attr(condition, "values")) == (
        "ArnNotEquals",
        "aws:PrincipalArn",
        ["${aws_iam_role.webhook.arn}"],
    )
    tls = by_sid["DenyInsecureTransport"]
    assert attr(tls, "effect") == "Deny"
    (condition,) = blocks(tls, "condition")
    assert (attr(condition, "variable"), attr(condition, "values")) == ("aws:SecureTransport", ["false"])
    for statement in by_sid.values():
        assert attr(statement, "resources") == ["${aws_sns_topic.events[0].arn}"]
    topic_policy = resource("aws_sns_topic_policy", "events")
    assert attr(topic_policy, "arn") == "${aws_sns_topic.events[0].arn}"
    assert attr(topic_policy, "policy") == "${data.aws_iam_policy_document.topic[0].json}"


@pytest.mark.parametrize(("single", "applier"), [("events", "applier"), ("dlq", "applier_dlq")])
def test_each_applier_queue_is_set_up_like_the_single_one(single, applier):
    ours, theirs = resource("aws_sqs_queue", single), resource("aws_sqs_queue", applier)
    same = (
        "fifo_queue",
        "content_based_deduplication",
        "deduplication_scope",
        "fifo_throughput_limit",
        "receive_wait_time_seconds",
        "sqs_managed_sse_enabled",
        "kms_master_key_id",
        "kms_data_key_reuse_period_seconds",
    )
    for key in same:
        assert attr(theirs, key) == attr(ours, key), key
    assert attr(theirs, "tags") == "${each.value.tags}"
    assert attr(ours, "tags") == "${local.single_queue_tags}"
    # Names and retention resolved per applier by the module.
    name = {"applier": "queue_name", "applier_dlq": "dlq_name"}[applier]
    assert attr(theirs, "name") == f"${{each.value.{name}}}"
    retention = {"applier": "message_retention_seconds", "applier_dlq": "dlq_message_retention_seconds"}[applier]
    assert attr(theirs, "message_retention_seconds") == f"${{each.value.{retention}}}"


def test_each_applier_queue_redrives_to_its_own_dead_letter_queue():
    queue = resource("aws_sqs_queue", "applier")
    policy = norm_expr(attr(queue, "redrive_policy"))
    assert re.search(r'deadLetterTargetArn"?[=:](\$\{)?aws_sqs_queue\.applier_dlq\[each\.key\]\.arn\b', policy), policy
    assert re.search(r'maxReceiveCount"?[=:](\$\{)?each\.value\.max_receive_count\b', policy), policy
    assert attr(queue, "visibility_timeout_seconds") == "${each.value.visibility_timeout_seconds}"
    allow = resource("aws_sqs_queue_redrive_allow_policy", "applier_dlq")
    assert attr(allow, "queue_url") == "${aws_sqs_queue.applier_dlq[each.key].id}"
    text = norm_expr(attr(allow, "redrive_allow_policy"))
    assert "byQueue" in text and re.search(r"sourceQueueArns\"?[=:]\[aws_sqs_queue\.applier\[each\.key\]\.arn\]", text), text


def test_single_queue_is_tagged_as_the_default_applier():
    assert norm_expr(local_values(module_doc())["single_queue_tags"]).replace("'", '"') == (
        '${merge(local.tags,{"kubetempura:applier":"default"})}'
    )


def test_each_applier_queue_admits_only_the_topic_and_only_over_tls():
    document = policy_document("applier_queue")
    assert attr(document, "for_each") == "${local.appliers}"
    by_sid = {attr(s, "sid"): s for s in statements(document)}
    assert set(by_sid) == {"DenyInsecureTransport", "DeliverFromTopic"}
    for statement in by_sid.values():
        assert attr(statement, "resources") == ["${aws_sqs_queue.applier[each.key].arn}"]
    deliver = by_sid["DeliverFromTopic"]
    assert attr(deliver, "actions") == ["sqs:SendMessage"]
    (principal,) = blocks(deliver, "principals")
    assert (attr(principal, "type"), attr(principal, "identifiers")) == ("Service", ["sns.amazonaws.com"])
    (condition,) = blocks(deliver, "condition")
    assert (attr(condition, "test"), attr(condition, "variable"), attr(condition, "values")) == (
        "ArnEquals",
        "aws:SourceArn",
        ["${aws_sns_topic.events[0].arn}"],
    )
    assert attr(by_sid["DenyInsecureTransport"], "effect") == "Deny"
    assert attr(resource("aws_sqs_queue_policy", "applier"), "policy") == (
        "${data.aws_iam_policy_document.applier_queue[each.key].json}"
    )
    # The dead-letter queue: TLS only, nothing may send to it but SQS's own redrive.
    assert attr(resource("aws_sqs_queue_policy", "applier_dlq"), "policy") == (
        '${data.aws_iam_policy_document.queue_tls_only["applier_dlq/${each.key}"].json}'
    )
    tls = norm_expr(attr(typed(module_doc(), "data")[("aws_iam_policy_document", "queue_tls_only")], "for_each"))
    assert re.search(r'\{for(\w+),(\w+)inaws_sqs_queue\.applier_dlq:"applier_dlq/\$\{\1\}"=>\2\.arn\}', tls), tls


def test_each_subscription_delivers_raw_with_a_message_attribute_filter_only_when_there_is_one():
    subscription = resource("aws_sns_topic_subscription", "applier")
    assert attr(subscription, "topic_arn") == "${aws_sns_topic.events[0].arn}"
    assert attr(subscription, "protocol") == "sqs"
    assert attr(subscription, "endpoint") == "${aws_sqs_queue.applier[each.key].arn}"
    # The applier reads the function's own message and attributes, not an SNS envelope.
    assert attr(subscription, "raw_message_delivery") is True
    assert attr(subscription, "filter_policy") == "${each.value.filter_policy}"
    # The provider refuses a scope without a policy; no policy means every event.
    assert norm_expr(attr(subscription, "filter_policy_scope")) == '${each.value.filter_policy==null?null:"MessageAttributes"}'
    assert "aws_sqs_queue_policy.applier" in norm_expr(attr(subscription, "depends_on"))
    # The function switches to the topic only once every applier is subscribed.
    assert "aws_sns_topic_subscription.applier" in norm_expr(attr(resource("aws_lambda_function", "webhook"), "depends_on"))


def test_each_applier_policy_names_only_its_own_queues():
    consumers = bare(local_values(module_doc())["applier_consumers"])
    # The single queue, under a key no applier can have (applier names have no '_'), while it exists.
    assert local_values(module_doc())["single_queue_key"] == "_single"
    # (bare: without braces, quotes or parentheses, which the two parsers render differently.)
    single = "local.single_queue?local.single_queue_key:queue_arn:aws_sqs_queue.events[0].arn,dlq_arn:aws_sqs_queue.dlq[0].arn:,"
    assert single in consumers, consumers
    # Each applier's key maps to that applier's queues: the same key variable in all four places.
    match = re.search(
        r"for(\w+),\w+inlocal\.appliers:(\w+)=>queue_arn:aws_sqs_queue\.applier\[(\w+)\]\.arn,dlq_arn:aws_sqs_queue\.applier_dlq\[(\w+)\]\.arn",
        consumers,
    )
    assert match and len(set(match.groups())) == 1, consumers
    # The document names queues only through each.value (see
    # test_applier_policy_consumes_one_queue_reads_its_tags_and_its_dlq_retention); the only
    # other queue it names is the shared feedback queue, which appliers only send to.
    for action, arns in _actions_by_resource(policy_document("applier")).items():
        if action.startswith("sqs:") and action != "sqs:SendMessage":
            assert arns <= {"${each.value.queue_arn}", "${each.value.dlq_arn}"}, (action, arns)
    # Each applier's managed policy is its own document.
    managed = resource("aws_iam_policy", "applier")
    assert attr(managed, "policy") == "${data.aws_iam_policy_document.applier[each.key].json}"
    assert attr(managed, "name") == "${var.name}-applier-${each.key}"


def test_module_identity_gets_the_document_of_the_applier_that_uses_it():
    assert norm_expr(local_values(module_doc())["module_identity_applier"]) == "${module.appliers.module_identity_applier}"
    for rtype, principal in [("aws_iam_role_policy", "local.create_applier_role"), ("aws_iam_user_policy", "var.create_applier_user")]:
        body = resource(rtype, "applier_fanout")
        assert norm_expr(attr(body, "count")) == f"${{{principal}&&local.module_identity_applier!=null?1:0}}"
        assert attr(body, "name") == "consume-events-${local.module_identity_applier}"
    # The module's identity without anything to read, or an applier asking for a missing one: refused at plan.
    for rtype, name in [("aws_iam_role", "applier"), ("aws_iam_user", "applier")]:
        conditions = [norm_expr(attr(p, "condition")) for l in blocks(resource(rtype, name), "lifecycle") for p in blocks(l, "precondition")]
        assert "${local.single_queue||local.module_identity_applier!=null}" in conditions, (rtype, conditions)
    conditions = [norm_expr(attr(p, "condition")) for l in blocks(resource("aws_iam_policy", "applier"), "lifecycle") for p in blocks(l, "precondition")]
    assert conditions == ["${!each.value.use_module_identity||local.create_applier_role||var.create_applier_user}"]


def test_applier_alarms_come_from_the_module_and_the_topic_alarms_on_failed_deliveries():
    alarm = resource("aws_cloudwatch_metric_alarm", "applier")
    assert attr(alarm, "for_each") == "${module.appliers.alarms}"
    assert attr(alarm, "namespace") == "AWS/SQS"
    assert attr(alarm, "dimensions") == {"QueueName": "${each.value.queue_name}"}
    for key in ("alarm_name", "alarm_description", "metric_name", "threshold"):
        assert attr(alarm, key).startswith("${each.value."), key
    topic = resource("aws_cloudwatch_metric_alarm", "topic_delivery_failed")
    assert (attr(topic, "namespace"), attr(topic, "metric_name")) == ("AWS/SNS", "NumberOfNotificationsFailed")
    assert attr(topic, "dimensions") == {"TopicName": "${aws_sns_topic.events[0].name}"}
    for body in (alarm, topic):
        assert attr(body, "comparison_operator") == "GreaterThanThreshold"
        assert attr(body, "alarm_actions") == "${local.alarm_actions}"
        assert attr(body, "ok_actions") == "${local.alarm_actions}"


def _type_text(variable: dict) -> str:
    return norm_expr(attr(variable, "type")).replace("'", '"')


def test_appliers_are_passed_to_the_module_unchanged_with_the_module_defaults():
    (module,) = [b for n, b in labelled(module_doc(), "module").items() if n == "appliers"]
    assert attr(module, "source") == "./modules/appliers"
    assert attr(module, "appliers") == "${var.appliers}"
    assert attr(module, "name") == "${var.name}"
    assert attr(module, "tags") == "${local.tags}"
    sub_variables = labelled(load_tf(APPLIERS_MODULE), "variable")
    # Same type on both sides: the root's type is what users see, the module's what is validated.
    assert _type_text(labelled(module_doc(), "variable")["appliers"]) == _type_text(sub_variables["appliers"])
    defaults = attr(module, "defaults")
    assert set(defaults) == set(re.findall(r'"(\w+)":', _type_text(sub_variables["defaults"])))
    for key, value in defaults.items():
        assert value == f"${{var.{key}}}", key
    assert attr(module, "reserved_queue_names") == [
        "${local.queue_name}",
        "${local.dlq_name}",
        "${local.feedback_queue_name}",
        "${local.feedback_dlq_name}",
    ]
    # Every rule on the applier map lives in the module, where test_appliers.py exercises it.
    assert len(blocks(sub_variables["appliers"], "validation")) >= 10


def run_args() -> dict[str, tuple[str, str]]:
    """`kubetempura run` fields of applier/src/run.rs -> (--flag, ENV) for `#[arg(long, env = ...)]`."""
    source = RUN_RS.read_text()
    found = {}
    for args, field in re.findall(r"#\[arg\(([^\]]*?)\)\]\s*pub\s+(\w+)\s*:", source, re.S):
        env = re.search(r'env\s*=\s*"([A-Z0-9_]+)"', args)
        if re.search(r"\blong\b(?!\s*=)", args) and env:
            found[field] = ("--" + field.replace("_", "-"), env.group(1))
    assert found, f"no #[arg(long, env = ...)] fields in {RUN_RS}"
    return found


def test_appliers_output_gives_each_applier_its_run_arguments_by_the_applier_s_own_names():
    outputs = labelled(module_doc(), "output")
    assert norm_expr(attr(outputs["topic_arn"], "value")) == "${local.fanout_enabled?aws_sns_topic.events[0].arn:null}"
    value = norm_expr(attr(outputs["appliers"], "value"))
    for key in ("queue_url", "queue_arn", "dlq_url", "dlq_arn", "policy_arn", "role_arn", "filter_policy", "run_args", "env"):
        assert f'"{key}":' in value, key
    args = run_args()
    queue_flag, queue_env = args["queue_url"]
    feedback_flag, feedback_env = args["feedback_queue_url"]
    assert f'"{queue_flag}=${{aws_sqs_queue.applier[k].url}}"' in value, value
    assert f'"{feedback_flag}=${{aws_sqs_queue.feedback[0].url}}"' in value, value
    assert f'"{queue_env}":aws_sqs_queue.applier[k].url' in value, value
    assert f'"{feedback_env}":aws_sqs_queue.feedback[0].url' in value, value
    for name in ("queue_url", "queue_arn", "dlq_url", "dlq_arn"):
        assert norm_expr(attr(outputs[name], "value")).startswith("${local.single_queue?"), name


# ---------------------------------------------------------------------------------------------
# Examples


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_example_is_a_root_module_using_only_declared_inputs_and_outputs(example):
    directory = EXAMPLES[example]
    for file in ("versions.tf", "main.tf", "variables.tf", "outputs.tf"):
        assert (directory / file).is_file(), f"examples/{example}/{file} is missing"
    doc = load_tf(directory)
    assert doc.get("terraform"), f"examples/{example} declares no terraform block"
    modules = labelled(doc, "module")
    assert len(modules) == 1
    (name, module), = modules.items()
    assert attr(module, "source") == "../.."

    declared_inputs = set(labelled(module_doc(), "variable"))
    used = set(module) - {"source", "version", "providers", "depends_on", "count", "for_each"}
    assert used <= declared_inputs, f"unknown module inputs: {sorted(used - declared_inputs)}"

    declared_outputs = set(labelled(module_doc(), "output"))
    text = "\n".join(p.read_text() for p in directory.glob("*.tf"))
    referenced = set(re.findall(rf"module\.{name}\.([a-z0-9_]+)", text))
    assert referenced, "the example exposes none of the module's outputs"
    assert referenced <= declared_outputs, f"unknown module outputs: {sorted(referenced - declared_outputs)}"

    for var_name, body in labelled(doc, "variable").items():
        assert attr(body, "type") and attr(body, "description"), f"examples/{example}: variable {var_name}"
    for out_name, body in labelled(doc, "output").items():
        assert attr(body, "description"), f"examples/{example}: output {out_name}"


def test_gke_example_federates_with_the_cluster_issuer_and_eks_example_uses_irsa():
    (gke,) = labelled(load_tf(EXAMPLES["gke"]), "module").values()
    assert "container.googleapis.com" in attr(gke, "applier_oidc_issuer_url")
    (eks,) = labelled(load_tf(EXAMPLES["eks"]), "module").values()
    assert "aws_iam_openid_connect_provider" in attr(eks, "applier_irsa_oidc_provider_arn")


def test_fanout_example_serves_two_clusters_one_through_the_module_role_one_through_its_own():
    doc = load_tf(EXAMPLES["fanout"])
    (module,) = labelled(doc, "module").values()
    appliers = attr(module, "appliers")
    assert sorted(appliers) == ["eks", "gke"]
    assert appliers["eks"].get("use_module_identity") is True
    assert "use_module_identity" not in appliers["gke"]
    assert "aws_iam_openid_connect_provider" in attr(module, "applier_irsa_oidc_provider_arn")
    # The other cluster's role gets that applier's policy, and nothing else.
    attachments = [b for (t, _), b in typed(doc, "resource").items() if t.startswith("aws_iam_") and "attachment" in t]
    assert [attr(b, "policy_arn") for b in attachments] == ['${module.kubetempura.appliers["gke"].policy_arn}']
    assert not [t for (t, _) in typed(doc, "resource") if t in ("aws_iam_role_policy", "aws_iam_policy")]
