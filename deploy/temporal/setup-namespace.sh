#!/bin/sh
# One-shot (the temporal-namespace service, temporalio/admin-tools image), once the server is
# healthy: the namespace with its retention, and the contract's search attributes (the full
# list of temporalutil/search_attributes.py; tests/test_deploy_compose.py keeps them equal).
# Safe to repeat: an existing namespace gets the retention, existing attributes are kept.
set -eu

: "${TEMPORAL_ADDRESS:?set TEMPORAL_ADDRESS}"
NAMESPACE=${TEMPORAL_NAMESPACE:-csp-orchestrator}
# How long Temporal keeps a closed workflow's history (the registry keeps every order for good).
RETENTION=${TEMPORAL_RETENTION:-30d}
SEARCH_ATTRIBUTES="
OrderId=Keyword
ResellerId=Keyword
CustomerDomain=Keyword
OrderStage=Keyword
ReminderCount=Int
AcceptanceDeadline=Datetime
SubscriptionId=Keyword
BillingPeriod=Keyword
PaymentStatus=Keyword
EscalationLevel=Int
PaymentDueAt=Datetime
SubscriptionStatus=Keyword
Seats=Int
AutoRenew=Bool
CancellableUntil=Datetime
TermEndsOn=Keyword
OpsAttention=KeywordList
"
export TEMPORAL_ADDRESS

# retry WHAT COMMAND...: run COMMAND until it succeeds (60 tries, 2 s apart).
retry() {
    what=$1
    shift
    attempt=0
    until "$@" >/dev/null 2>&1; do
        attempt=$((attempt + 1))
        if [ "$attempt" -ge 60 ]; then
            echo "gave up waiting for $what after $attempt tries" >&2
            exit 1
        fi
        sleep 2
    done
}

all_attributes_listed() {
    listed=$(temporal operator search-attribute list --namespace "$NAMESPACE") || return 1
    for attribute in $SEARCH_ATTRIBUTES; do
        printf '%s\n' "$listed" | grep -qw -- "${attribute%%=*}" || return 1
    done
}

retry "Temporal at $TEMPORAL_ADDRESS to be healthy" temporal operator cluster health

if temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
    temporal operator namespace update --namespace "$NAMESPACE" --retention "$RETENTION"
    echo "namespace $NAMESPACE: retention $RETENTION"
else
    temporal operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION" \
        --description "csp-orchestrator: Microsoft CSP orders, subscriptions and renewals"
    echo "namespace $NAMESPACE created, retention $RETENTION"
    # A new namespace reaches the frontend's cache a few seconds later.
    retry "namespace $NAMESPACE to be served" \
        temporal operator search-attribute list --namespace "$NAMESPACE"
fi

existing=$(temporal operator search-attribute list --namespace "$NAMESPACE")
for attribute in $SEARCH_ATTRIBUTES; do
    name=${attribute%%=*}
    type=${attribute#*=}
    if printf '%s\n' "$existing" | grep -qw -- "$name"; then
        echo "search attribute $name: present"
    else
        temporal operator search-attribute create --namespace "$NAMESPACE" \
            --name "$name" --type "$type"
        echo "search attribute $name ($type): created"
    fi
done
# Workers start once this job ends: every attribute must be usable by then.
retry "the search attributes to be listed" all_attributes_listed
echo "namespace $NAMESPACE is ready"
