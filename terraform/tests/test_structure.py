"""Structural tests of the kubetempura Terraform module, run without providers or AWS.

`terraform init/validate` cannot run here (no provider can be downloaded), so these tests read
the HCL with python-hcl2 and check what a reviewer would: the queues are FIFO, encrypted and
redriven; the IAM policies grant exactly the actions the function and the applier need, on
this module's resources only; the function's environment names are the ones the Rust function
reads (parsed from functions/webhook/src/config.rs, so a rename on either side fails here);
every variable and output is described; the examples only use inputs and outputs that exist.

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
EXAMPLES = {"gke": TF_DIR / "examples" / "gke", "eks": TF_DIR / "examples" / "eks"}

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


@lru_cache(maxsize=None)
def load_tf(directory: Path) -> dict:
    """All .tf files of a directory merged: {'resource': [...], 'variable': [...], ...}."""
    merged: dict[str, list] = {}
    files = sorted(directory.glob("*.tf"))
    assert files, f"no .tf files in {directory}"
    for path in files:
        with path.open() as handle:
            raw = hcl2.load(handle)
        doc = _body({**raw, "__is_block__": True}) if _has_block_markers(raw) else _strip_meta(raw)
        for key, value in doc.items():
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
    assert re.search(r'deadLetterTargetArn"?[=:](\$\{)?aws_sqs_queue\.dlq\.arn\b', policy), policy
    assert re.search(r'maxReceiveCount"?[=:](\$\{)?var\.max_receive_count\b', policy), policy


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("max_receive_count", 1, 1000),
        ("visibility_timeout_seconds", 0, 43200),
        ("message_retention_seconds", 60, 1209600),
        ("dlq_message_retention_seconds", 60, 1209600),
        ("lambda_memory_size", 128, 10240),
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


def test_function_policy_allows_only_send_message_secret_and_own_logs():
    grants = _actions_by_resource(policy_document("webhook"))
    assert set(grants) <= {
        "sqs:SendMessage",
        "secretsmanager:GetSecretValue",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "kms:GenerateDataKey",
        "kms:Decrypt",
    }, sorted(grants)
    assert grants["sqs:SendMessage"] == {"${aws_sqs_queue.events.arn}"}
    assert grants["secretsmanager:GetSecretValue"] == {"${local.secret_arn}"}
    assert grants["logs:CreateLogStream"] == {"${aws_cloudwatch_log_group.webhook.arn}:*"}
    assert grants["logs:PutLogEvents"] == {"${aws_cloudwatch_log_group.webhook.arn}:*"}


def test_applier_policy_allows_the_four_consumer_actions_on_the_queue_and_reads_the_dlq():
    grants = _actions_by_resource(policy_document("applier"))
    consumer = {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    }
    assert set(grants) - {"kms:Decrypt"} == consumer | {"sqs:GetQueueUrl"}, sorted(grants)
    for action in consumer - {"sqs:GetQueueAttributes"}:
        assert grants[action] == {"${aws_sqs_queue.events.arn}"}, action
    # At start it reads both queues' message retention (the DLQ found by name from its ARN),
    # and never receives from, deletes from or redrives the dead-letter queue.
    assert grants["sqs:GetQueueAttributes"] == {
        "${aws_sqs_queue.events.arn}",
        "${aws_sqs_queue.dlq.arn}",
    }
    assert grants["sqs:GetQueueUrl"] == {"${aws_sqs_queue.dlq.arn}"}
    # Both the role and the (discouraged) user get exactly this document.
    for rtype, name in [("aws_iam_role_policy", "applier"), ("aws_iam_user_policy", "applier")]:
        assert attr(resource(rtype, name), "policy") == "${data.aws_iam_policy_document.applier.json}"


@pytest.mark.parametrize("document", ["webhook", "applier"])
def test_kms_grants_are_only_for_the_given_key_and_only_via_the_service(document):
    for statement in statements(policy_document(document)):
        actions = as_list(attr(statement, "actions", []))
        if not any(a.startswith("kms:") for a in actions):
            continue
        assert all(a.startswith("kms:") for a in actions), actions
        assert attr(statement, "resources") == ["${statement.value}"]
        via = [c for c in blocks(statement, "condition") if attr(c, "variable") == "kms:ViaService"]
        assert via and attr(via[0], "test") == "StringEquals"
    for dynamic in blocks(policy_document(document), "dynamic"):
        for_each = norm_expr(attr(dynamic["statement"], "for_each"))
        assert re.search(r"(var\.kms_key_arn|local\.secret_kms_key_arn)==null\?\[\]:", for_each), for_each


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
                assert arn == "${aws_cloudwatch_log_group.webhook.arn}:*", f"{name}: {arn}"
        for principals in blocks(statement, "principals"):
            assert "*" not in as_list(attr(principals, "identifiers")), f"{name}: public principal"
    assert seen >= 6
    # No hand-written JSON policies that would escape the checks above.
    for (rtype, name), body in typed(module_doc(), "resource").items():
        for key in ("policy", "assume_role_policy"):
            value = attr(body, key)
            if value is not None:
                assert re.fullmatch(r"\$\{data\.aws_iam_policy_document\.[a-z_]+(\[\"[a-z]+\"\])?\.json\}", value) or (
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
    for rtype in ("aws_iam_user", "aws_iam_user_policy", "aws_iam_access_key"):
        assert norm_expr(attr(resource(rtype, "applier"), "count")) == "${var.create_applier_user?1:0}"
    outputs = labelled(module_doc(), "output")
    for name in ("applier_access_key_id", "applier_secret_access_key"):
        assert attr(outputs[name], "sensitive") is True, name


# ---------------------------------------------------------------------------------------------
# The function


def test_function_environment_names_are_read_by_the_rust_function():
    names = function_env_names()
    rust = rust_env_vars()
    assert names <= rust, f"not read by config.rs ENV_VARS: {sorted(names - rust)}"
    assert {"QUEUE_URL", "WEBHOOK_SECRET_ARN"} <= names


def test_function_environment_never_holds_the_plaintext_secret():
    assert "WEBHOOK_SECRET" in rust_env_vars(), "config.rs no longer names WEBHOOK_SECRET: update this test"
    assert "WEBHOOK_SECRET" not in function_env_names()
    values = local_values(module_doc())
    required = values["function_environment_required"]
    assert norm_expr(required["QUEUE_URL"]) == "${aws_sqs_queue.events.url}"
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
    assert attr(dlq, "dimensions") == {"QueueName": "${aws_sqs_queue.dlq.name}"}
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
