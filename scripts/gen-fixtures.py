#!/usr/bin/env python3
"""Generate hookfan's own GitHub webhook payload fixtures.

Writes tests/fixtures/webhooks/*.json (and the README.md that lists them):
payloads shaped like GitHub's webhook deliveries, built from a small fixed
world (organizations acme and widgets, users alice / bob / carol and the bot
hookfan-ci[bot], pull request acme/api#7). Everything is deterministic: fixed
ids, fixed timestamps, no network, standard library only.

    python3 scripts/gen-fixtures.py           # (re)write the fixtures
    python3 scripts/gen-fixtures.py --check   # exit 1 if the committed files differ

File names are `<X-GitHub-Event>.<action>[.<variant>].json`, or
`<X-GitHub-Event>[.<variant>].json` for events without an action.
"""

import argparse
import base64
import calendar
import json
import re
import sys
import time
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "webhooks"

API = "https://api.github.com"
WEB = "https://github.com"

# ---------------------------------------------------------------------------
# The world. Tests are written by hand against these values.
# ---------------------------------------------------------------------------

H1 = "0b1e2c6f4d8a3e5b7c9d1f2a4b6c8e0d2f4a6b8c"  # head of acme/api#7 as opened
H2 = "5f3c8e1a9b7d2c4e6f8a0b2d4c6e8f0a1b3d5c7e"  # head after synchronize
BASE_SHA = "3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f"  # main when #7 was opened
MERGE_SHA = "7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e"  # merge commit of #7
TEST_MERGE_SHA = "c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0"  # GitHub's test merge of open #7
PUSH_SHA_1 = "2c4e6a8b0d1f3a5c7e9b1d3f5a7c9e0b2d4f6a8c"
PUSH_SHA_2 = "8f6d4b2a0e9c7a5f3d1b9e7c5a3f1d0b8e6c4a2f"
PRIVATE_HEAD = "9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b"
PRIVATE_BASE = "1f2e3d4c5b6a7f8e9d0c1b2a3f4e5d6c7b8a9f0e"

INSTALLATION_ID = 4242

USERS = {
    # login: (id, type)
    "alice": (58101001, "User"),
    "bob": (58101002, "User"),
    "carol": (58101003, "User"),
    "hookfan-ci[bot]": (190001001, "Bot"),
}
ORGS = {
    # login: (id, description)
    "acme": (9001, "Public services and their API."),
    "widgets": (9002, "Widget makers."),
}
REPOS = {
    # full_name: settings
    "acme/api": {
        "id": 710000001,
        "private": False,
        "description": "HTTP API service",
        "homepage": None,
        "language": "Rust",
        "size": 2841,
        "stargazers": 312,
        "forks": 27,
        "open_issues": 14,
        "topics": ["api", "http", "rust"],
        "license": ("mit", "MIT License", "MIT", "MDc6TGljZW5zZTEz"),
        "created_at": "2024-03-04T09:00:00Z",
        "updated_at": "2026-11-19T16:40:12Z",
        "pushed_at": "2026-11-20T10:41:58Z",
    },
    "widgets/secret-sauce": {
        "id": 710000002,
        "private": True,
        "description": "Internal recipes",
        "homepage": None,
        "language": "Python",
        "size": 412,
        "stargazers": 3,
        "forks": 0,
        "open_issues": 2,
        "topics": [],
        "license": None,
        "created_at": "2025-01-13T14:30:00Z",
        "updated_at": "2026-11-18T08:02:44Z",
        "pushed_at": "2026-11-20T11:58:30Z",
    },
}

APP_ID = 310001
APP_SLUG = "hookfan-ci"


def node_id(type_name, num):
    """GitHub's legacy global node id: base64 of "0<len>:<Type><id>"."""
    raw = "0%d:%s%d" % (len(type_name), type_name, num)
    return base64.b64encode(raw.encode()).decode()


def reactions(url):
    return {
        "url": url + "/reactions",
        "total_count": 0,
        "+1": 0,
        "-1": 0,
        "laugh": 0,
        "hooray": 0,
        "confused": 0,
        "heart": 0,
        "rocket": 0,
        "eyes": 0,
    }


# ---------------------------------------------------------------------------
# Object builders
# ---------------------------------------------------------------------------


def _account(login, num, type_name, node_type):
    path = login.replace("[", "%5B").replace("]", "%5D")
    u = "%s/users/%s" % (API, path)
    if type_name == "Bot":
        avatar = "https://avatars.githubusercontent.com/in/%d?v=4" % APP_ID
        html = "%s/apps/%s" % (WEB, login[: -len("[bot]")])
    else:
        avatar = "https://avatars.githubusercontent.com/u/%d?v=4" % num
        html = "%s/%s" % (WEB, login)
    return {
        "login": login,
        "id": num,
        "node_id": node_id(node_type, num),
        "avatar_url": avatar,
        "gravatar_id": "",
        "url": u,
        "html_url": html,
        "followers_url": u + "/followers",
        "following_url": u + "/following{/other_user}",
        "gists_url": u + "/gists{/gist_id}",
        "starred_url": u + "/starred{/owner}{/repo}",
        "subscriptions_url": u + "/subscriptions",
        "organizations_url": u + "/orgs",
        "repos_url": u + "/repos",
        "events_url": u + "/events{/privacy}",
        "received_events_url": u + "/received_events",
        "type": type_name,
        "site_admin": False,
    }


def user(login, num=None):
    """A user (or bot) account as GitHub embeds it: sender, user, assignee..."""
    known_id, type_name = USERS.get(login, (num, "User"))
    num = known_id if num is None else num
    return _account(login, num, type_name, "Bot" if type_name == "Bot" else "User")


def org_account(login):
    """An organization as a repository owner (user-shaped, type Organization)."""
    return _account(login, ORGS[login][0], "Organization", "Organization")


def organization(login):
    """The top-level `organization` object."""
    num, description = ORGS[login]
    u = "%s/orgs/%s" % (API, login)
    return {
        "login": login,
        "id": num,
        "node_id": node_id("Organization", num),
        "url": u,
        "repos_url": u + "/repos",
        "events_url": u + "/events",
        "hooks_url": u + "/hooks",
        "issues_url": u + "/issues",
        "members_url": u + "/members{/member}",
        "public_members_url": u + "/public_members{/member}",
        "avatar_url": "https://avatars.githubusercontent.com/u/%d?v=4" % num,
        "description": description,
    }


def installation():
    return {"id": INSTALLATION_ID, "node_id": node_id("IntegrationInstallation", INSTALLATION_ID)}


def repo(owner, name, private=None, style="full"):
    """A repository object.

    style: "minimal" (workflow_run's repository / head_repository),
    "full" (the top-level `repository`), "pr" (pull_request head.repo /
    base.repo: full plus merge settings), "push" (push's variant: integer
    created_at / pushed_at, owner with name and email).
    """
    full_name = "%s/%s" % (owner, name)
    s = REPOS[full_name]
    if private is None:
        private = s["private"]
    u = "%s/repos/%s" % (API, full_name)
    html = "%s/%s" % (WEB, full_name)
    owner_obj = org_account(owner)
    if style == "push":
        owner_obj = dict([("name", owner), ("email", None)] + list(owner_obj.items()))
    r = {
        "id": s["id"],
        "node_id": node_id("Repository", s["id"]),
        "name": name,
        "full_name": full_name,
        "private": private,
        "owner": owner_obj,
        "html_url": html,
        "description": s["description"],
        "fork": False,
        "url": u,
        "forks_url": u + "/forks",
        "keys_url": u + "/keys{/key_id}",
        "collaborators_url": u + "/collaborators{/collaborator}",
        "teams_url": u + "/teams",
        "hooks_url": u + "/hooks",
        "issue_events_url": u + "/issues/events{/number}",
        "events_url": u + "/events",
        "assignees_url": u + "/assignees{/user}",
        "branches_url": u + "/branches{/branch}",
        "tags_url": u + "/tags",
        "blobs_url": u + "/git/blobs{/sha}",
        "git_tags_url": u + "/git/tags{/sha}",
        "git_refs_url": u + "/git/refs{/sha}",
        "trees_url": u + "/git/trees{/sha}",
        "statuses_url": u + "/statuses/{sha}",
        "languages_url": u + "/languages",
        "stargazers_url": u + "/stargazers",
        "contributors_url": u + "/contributors",
        "subscribers_url": u + "/subscribers",
        "subscription_url": u + "/subscription",
        "commits_url": u + "/commits{/sha}",
        "git_commits_url": u + "/git/commits{/sha}",
        "comments_url": u + "/comments{/number}",
        "issue_comment_url": u + "/issues/comments{/number}",
        "contents_url": u + "/contents/{+path}",
        "compare_url": u + "/compare/{base}...{head}",
        "merges_url": u + "/merges",
        "archive_url": u + "/{archive_format}{/ref}",
        "downloads_url": u + "/downloads",
        "issues_url": u + "/issues{/number}",
        "pulls_url": u + "/pulls{/number}",
        "milestones_url": u + "/milestones{/number}",
        "notifications_url": u + "/notifications{?since,all,participating}",
        "labels_url": u + "/labels{/name}",
        "releases_url": u + "/releases{/id}",
        "deployments_url": u + "/deployments",
    }
    if style == "minimal":
        return r
    lic = None
    if s["license"]:
        key, lname, spdx, lnode = s["license"]
        lic = {
            "key": key,
            "name": lname,
            "spdx_id": spdx,
            "url": "%s/licenses/%s" % (API, key),
            "node_id": lnode,
        }
    created, pushed = s["created_at"], s["pushed_at"]
    if style == "push":
        created, pushed = epoch(created), epoch(pushed)
    r.update(
        {
            "created_at": created,
            "updated_at": s["updated_at"],
            "pushed_at": pushed,
            "git_url": "git://github.com/%s.git" % full_name,
            "ssh_url": "git@github.com:%s.git" % full_name,
            "clone_url": "%s/%s.git" % (WEB, full_name),
            "svn_url": html,
            "homepage": s["homepage"],
            "size": s["size"],
            "stargazers_count": s["stargazers"],
            "watchers_count": s["stargazers"],
            "language": s["language"],
            "has_issues": True,
            "has_projects": True,
            "has_downloads": True,
            "has_wiki": not private,
            "has_pages": False,
            "has_discussions": False,
            "forks_count": s["forks"],
            "mirror_url": None,
            "archived": False,
            "disabled": False,
            "open_issues_count": s["open_issues"],
            "license": lic,
            "allow_forking": not private,
            "is_template": False,
            "web_commit_signoff_required": False,
            "topics": list(s["topics"]),
            "visibility": "private" if private else "public",
            "forks": s["forks"],
            "open_issues": s["open_issues"],
            "watchers": s["stargazers"],
            "default_branch": "main",
        }
    )
    if style == "push":
        r["stargazers"] = s["stargazers"]
        r["master_branch"] = "main"
        r["organization"] = owner
    if style == "pr":
        r.update(
            {
                "allow_squash_merge": True,
                "allow_merge_commit": True,
                "allow_rebase_merge": True,
                "allow_auto_merge": False,
                "delete_branch_on_merge": True,
                "allow_update_branch": True,
                "use_squash_pr_title_as_default": True,
                "squash_merge_commit_message": "PR_BODY",
                "squash_merge_commit_title": "PR_TITLE",
                "merge_commit_message": "PR_TITLE",
                "merge_commit_title": "MERGE_MESSAGE",
            }
        )
    r["custom_properties"] = {}
    return r


def epoch(ts):
    """Seconds since 1970 for a fixed "YYYY-MM-DDTHH:MM:SSZ" timestamp."""
    return calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ"))


def label(full_name, num, name, color, description, default=False):
    return {
        "id": num,
        "node_id": node_id("Label", num),
        "url": "%s/repos/%s/labels/%s" % (API, full_name, name),
        "name": name,
        "color": color,
        "default": default,
        "description": description,
    }


def enhancement(full_name="acme/api"):
    return label(full_name, 5500000101, "enhancement", "a2eeef", "New feature or request", True)


PRS = {
    # (full_name, number): fixed facts about the pull request
    ("acme/api", 7): {
        "id": 2100000007,
        "title": "Retry webhook deliveries with exponential backoff",
        "author": "alice",
        "head_ref": "feature/retry-backoff",
        "base_sha": BASE_SHA,
        "created_at": "2026-11-20T10:15:00Z",
        "body": (
            "Failed deliveries are now retried with exponential backoff "
            "(base 500 ms, factor 2, jitter 20%) instead of being dropped.\n\n"
            "- adds `RetryPolicy` with a configurable attempt cap\n"
            "- retries only on 5xx and connection errors\n"
            "- records each attempt in the delivery log\n\n"
            "Closes #5."
        ),
        "author_association": "MEMBER",
    },
    ("widgets/secret-sauce", 3): {
        "id": 2100000103,
        "title": "Tune the default simmer time",
        "author": "carol",
        "head_ref": "tune-simmer-time",
        "base_sha": PRIVATE_BASE,
        "created_at": "2026-11-20T12:00:00Z",
        "body": "Lowers the default simmer time from 40 to 35 minutes, per the last tasting notes.",
        "author_association": "MEMBER",
    },
}


def pr_ref(full_name, number):
    org, name = full_name.split("/")
    return PRS[(full_name, number)], org, name


def pull_request(
    full_name,
    number,
    head_sha,
    at,
    requested_reviewers=(),
    assignee=None,
    assignees=(),
    labels=(),
    state="open",
    merged_by=None,
    stats=(1, 3, 0, 0),
    webhook_full=True,
    fresh=False,
):
    """A pull_request object. webhook_full=False gives the shorter form that
    pull_request_review* events carry (no merged / mergeable / counts).
    fresh: just opened, so GitHub has not computed mergeability yet.
    stats: (commits, files changed, deletions factor, issue comments)."""
    p, org, name = pr_ref(full_name, number)
    u = "%s/repos/%s" % (API, full_name)
    html = "%s/%s/pull/%d" % (WEB, full_name, number)
    author = user(p["author"])
    merged = merged_by is not None
    closed_at = at if state == "closed" else None
    pr = {
        "url": "%s/pulls/%d" % (u, number),
        "id": p["id"],
        "node_id": node_id("PullRequest", p["id"]),
        "html_url": html,
        "diff_url": html + ".diff",
        "patch_url": html + ".patch",
        "issue_url": "%s/issues/%d" % (u, number),
        "number": number,
        "state": state,
        "locked": False,
        "title": p["title"],
        "user": author,
        "body": p["body"],
        "created_at": p["created_at"],
        "updated_at": at,
        "closed_at": closed_at,
        "merged_at": at if merged else None,
        "merge_commit_sha": MERGE_SHA if merged else (None if fresh else TEST_MERGE_SHA),
        "assignee": user(assignee) if assignee else None,
        "assignees": [user(a) for a in assignees],
        "requested_reviewers": [user(r) for r in requested_reviewers],
        "requested_teams": [],
        "labels": list(labels),
        "milestone": None,
        "draft": False,
        "commits_url": "%s/pulls/%d/commits" % (u, number),
        "review_comments_url": "%s/pulls/%d/comments" % (u, number),
        "review_comment_url": u + "/pulls/comments{/number}",
        "comments_url": "%s/issues/%d/comments" % (u, number),
        "statuses_url": "%s/statuses/%s" % (u, head_sha),
        "head": {
            "label": "%s:%s" % (org, p["head_ref"]),
            "ref": p["head_ref"],
            "sha": head_sha,
            "user": org_account(org),
            "repo": repo(org, name, style="pr"),
        },
        "base": {
            "label": "%s:main" % org,
            "ref": "main",
            "sha": p["base_sha"],
            "user": org_account(org),
            "repo": repo(org, name, style="pr"),
        },
        "_links": {
            "self": {"href": "%s/pulls/%d" % (u, number)},
            "html": {"href": html},
            "issue": {"href": "%s/issues/%d" % (u, number)},
            "comments": {"href": "%s/issues/%d/comments" % (u, number)},
            "review_comments": {"href": "%s/pulls/%d/comments" % (u, number)},
            "review_comment": {"href": u + "/pulls/comments{/number}"},
            "commits": {"href": "%s/pulls/%d/commits" % (u, number)},
            "statuses": {"href": "%s/statuses/%s" % (u, head_sha)},
        },
        "author_association": p["author_association"],
        "auto_merge": None,
        "active_lock_reason": None,
    }
    if webhook_full:
        commits, additions, deletions, comments = stats
        pr.update(
            {
                "merged": merged,
                "mergeable": None if (fresh or merged) else True,
                "rebaseable": None if (fresh or merged) else True,
                "mergeable_state": "unknown" if (fresh or merged) else "clean",
                "merged_by": user(merged_by) if merged else None,
                "comments": comments,
                "review_comments": 0 if fresh else 2,
                "maintainer_can_modify": False,
                "commits": commits,
                "additions": additions * 48,
                "deletions": deletions * 5 + 3,
                "changed_files": additions,
            }
        )
    return pr


def pr_summary(full_name, number, head_sha):
    """The short pull request entry of check_run / check_suite / workflow_run
    `pull_requests`: url, id, number, head, base (no html_url)."""
    p, org, name = pr_ref(full_name, number)
    s = REPOS[full_name]
    mini = {"id": s["id"], "url": "%s/repos/%s" % (API, full_name), "name": name}
    return {
        "url": "%s/repos/%s/pulls/%d" % (API, full_name, number),
        "id": p["id"],
        "number": number,
        "head": {"ref": p["head_ref"], "sha": head_sha, "repo": dict(mini)},
        "base": {"ref": "main", "sha": p["base_sha"], "repo": dict(mini)},
    }


def git_person(login, at=None, username=False):
    num = USERS[login][0]
    names = {"alice": "Alice Lindqvist", "bob": "Bob Okafor", "carol": "Carol Mendes"}
    d = {"name": names[login], "email": "%d+%s@users.noreply.github.com" % (num, login)}
    if at:
        d["date"] = at
    if username:
        d["username"] = login
    return d


def app():
    """The GitHub App that runs the checks (its bot is hookfan-ci[bot])."""
    return {
        "id": APP_ID,
        "slug": APP_SLUG,
        "node_id": node_id("App", APP_ID),
        "client_id": "Iv23liQ4xK7pR2sT9wYb",
        "owner": org_account("acme"),
        "name": "hookfan-ci",
        "description": "Builds and tests every push and pull request.",
        "external_url": "https://ci.hookfan.example.com",
        "html_url": "%s/apps/%s" % (WEB, APP_SLUG),
        "created_at": "2025-06-02T08:00:00Z",
        "updated_at": "2026-10-01T12:30:00Z",
        "permissions": {
            "actions": "read",
            "checks": "write",
            "contents": "read",
            "metadata": "read",
            "pull_requests": "read",
            "statuses": "write",
        },
        "events": ["check_run", "check_suite", "pull_request", "push", "status"],
    }


COMMITS = {
    # sha: (tree, message, author login, timestamp)
    H1: (
        "4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b",
        "Retry webhook deliveries with exponential backoff",
        "alice",
        "2026-11-20T10:12:41Z",
    ),
    H2: (
        "6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c",
        "Cap retry attempts and make the cap configurable",
        "alice",
        "2026-11-20T10:41:55Z",
    ),
    PUSH_SHA_1: (
        "0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f",
        "Add changelog entry for delivery retries",
        "bob",
        "2026-11-20T11:27:03Z",
    ),
    PUSH_SHA_2: (
        "d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5",
        "Release 0.4.1",
        "bob",
        "2026-11-20T11:28:40Z",
    ),
}


def head_commit(sha):
    """check_suite / workflow_run `head_commit`."""
    tree, message, login, ts = COMMITS[sha]
    return {
        "id": sha,
        "tree_id": tree,
        "message": message,
        "timestamp": ts,
        "author": git_person(login),
        "committer": git_person(login),
    }


def push_commit(full_name, sha, added=(), removed=(), modified=()):
    tree, message, login, ts = COMMITS[sha]
    return {
        "id": sha,
        "tree_id": tree,
        "distinct": True,
        "message": message,
        "timestamp": ts,
        "url": "%s/%s/commit/%s" % (WEB, full_name, sha),
        "author": git_person(login, username=True),
        "committer": git_person(login, username=True),
        "added": list(added),
        "removed": list(removed),
        "modified": list(modified),
    }


CHECK_SUITE_ID = 3300000042
CHECK_RUN_ID = 3400000042


def check_suite(head_sha, status, conclusion, prs, at, created_at, with_head_commit=True):
    u = "%s/repos/acme/api" % API
    cs = {
        "id": CHECK_SUITE_ID,
        "node_id": node_id("CheckSuite", CHECK_SUITE_ID),
        "head_branch": "feature/retry-backoff",
        "head_sha": head_sha,
        "status": status,
        "conclusion": conclusion,
        "url": "%s/check-suites/%d" % (u, CHECK_SUITE_ID),
        "before": H1,
        "after": head_sha,
        "pull_requests": prs,
        "app": app(),
        "created_at": created_at,
        "updated_at": at,
    }
    if with_head_commit:
        cs.update(
            {
                "rerequestable": True,
                "runs_rerequestable": True,
                "latest_check_runs_count": 1 if status != "queued" else 0,
                "check_runs_url": "%s/check-suites/%d/check-runs" % (u, CHECK_SUITE_ID),
                "head_commit": head_commit(head_sha),
            }
        )
    return cs


def check_run(head_sha, status, conclusion, prs, started_at, completed_at, suite_at):
    u = "%s/repos/acme/api" % API
    done = status == "completed"
    return {
        "id": CHECK_RUN_ID,
        "name": "build-and-test",
        "node_id": node_id("CheckRun", CHECK_RUN_ID),
        "head_sha": head_sha,
        "external_id": "hookfan-ci-run-1187",
        "url": "%s/check-runs/%d" % (u, CHECK_RUN_ID),
        "html_url": "%s/acme/api/runs/%d" % (WEB, CHECK_RUN_ID),
        "details_url": "https://ci.hookfan.example.com/runs/1187",
        "status": status,
        "conclusion": conclusion,
        "started_at": started_at,
        "completed_at": completed_at,
        "output": {
            "title": "Build and tests passed" if done else None,
            "summary": "412 tests passed, 0 failed, 3 ignored (4m 12s)." if done else None,
            "text": None,
            "annotations_count": 0,
            "annotations_url": "%s/check-runs/%d/annotations" % (u, CHECK_RUN_ID),
        },
        "check_suite": check_suite(
            head_sha,
            status,
            conclusion,
            [dict(p) for p in prs],
            suite_at,
            "2026-11-20T10:42:12Z",
            with_head_commit=False,
        ),
        "app": app(),
        "pull_requests": prs,
    }


# ---------------------------------------------------------------------------
# Payloads
# ---------------------------------------------------------------------------


def envelope(full_name, sender, **fields):
    """Adds repository, organization, sender and installation, in GitHub's order."""
    org, name = full_name.split("/")
    d = dict(fields)
    d["repository"] = repo(org, name)
    d["organization"] = organization(org)
    d["sender"] = user(sender)
    d["installation"] = installation()
    return d


def pr_event(action, sender, pr, full_name="acme/api", **extra):
    d = {"action": action, "number": pr["number"], "pull_request": pr}
    d.update(extra)
    return envelope(full_name, sender, **d)


def issue_comment_url(full_name, num):
    return "%s/repos/%s/issues/comments/%d" % (API, full_name, num)


def milestone(full_name, number, milestone_id, title, creator, open_issues, closed_issues, due_on):
    u = "%s/repos/%s/milestones/%d" % (API, full_name, number)
    return {
        "url": u,
        "html_url": "%s/%s/milestone/%d" % (WEB, full_name, number),
        "labels_url": u + "/labels",
        "id": milestone_id,
        "node_id": node_id("Milestone", milestone_id),
        "number": number,
        "title": title,
        "description": None,
        "creator": user(creator),
        "open_issues": open_issues,
        "closed_issues": closed_issues,
        "state": "open",
        "created_at": "2026-10-01T09:00:00Z",
        "updated_at": "2026-11-20T09:30:00Z",
        "due_on": due_on,
        "closed_at": None,
    }


def issue(full_name, number, issue_id, title, author, body, at, labels=(), as_pr=False, comments=0, milestone=None):
    u = "%s/repos/%s" % (API, full_name)
    iu = "%s/issues/%d" % (u, number)
    kind = "pull" if as_pr else "issues"
    d = {
        "url": iu,
        "repository_url": u,
        "labels_url": iu + "/labels{/name}",
        "comments_url": iu + "/comments",
        "events_url": iu + "/events",
        "html_url": "%s/%s/%s/%d" % (WEB, full_name, kind, number),
        "id": issue_id,
        "node_id": node_id("Issue", issue_id),
        "number": number,
        "title": title,
        "user": user(author),
        "labels": list(labels),
        "state": "open",
        "locked": False,
        "assignee": None,
        "assignees": [],
        "milestone": milestone,
        "comments": comments,
        "created_at": "2026-11-20T10:15:00Z" if as_pr else "2026-11-19T15:05:00Z",
        "updated_at": at,
        "closed_at": None,
        "author_association": "MEMBER",
        "type": None,
        "active_lock_reason": None,
        "draft": False,
    }
    if as_pr:
        pu = "%s/pull/%d" % (WEB + "/" + full_name, number)
        d["pull_request"] = {
            "url": "%s/pulls/%d" % (u, number),
            "html_url": pu,
            "diff_url": pu + ".diff",
            "patch_url": pu + ".patch",
            "merged_at": None,
        }
    d.update(
        {
            "body": body,
            "reactions": reactions(iu),
            "timeline_url": iu + "/timeline",
            "performed_via_github_app": None,
            "state_reason": None,
        }
    )
    return d


def comment(full_name, number, comment_id, author, body, at, as_pr=False):
    u = issue_comment_url(full_name, comment_id)
    kind = "pull" if as_pr else "issues"
    return {
        "url": u,
        "html_url": "%s/%s/%s/%d#issuecomment-%d" % (WEB, full_name, kind, number, comment_id),
        "issue_url": "%s/repos/%s/issues/%d" % (API, full_name, number),
        "id": comment_id,
        "node_id": node_id("IssueComment", comment_id),
        "user": user(author),
        "created_at": at,
        "updated_at": at,
        "author_association": "MEMBER",
        "body": body,
        "reactions": reactions(u),
        "performed_via_github_app": None,
    }


DIFF_HUNK = (
    "@@ -38,6 +38,18 @@ impl Deliverer {\n"
    "     pub async fn deliver(&self, hook: &Hook, body: Bytes) -> Result<(), Error> {\n"
    "         let mut attempt = 0;\n"
    "+        loop {\n"
    "+            match self.send(hook, body.clone()).await {\n"
    "+                Ok(()) => return Ok(()),\n"
    "+                Err(e) if e.is_retryable() => {\n"
    "+                    attempt += 1;\n"
    "+                    sleep(self.policy.delay(attempt)).await;"
)


def review_comment(comment_id, review_id, author, body, at):
    u = "%s/repos/acme/api/pulls/comments/%d" % (API, comment_id)
    html = "%s/acme/api/pull/7#discussion_r%d" % (WEB, comment_id)
    return {
        "url": u,
        "pull_request_review_id": review_id,
        "id": comment_id,
        "node_id": node_id("PullRequestReviewComment", comment_id),
        "diff_hunk": DIFF_HUNK,
        "path": "src/deliver.rs",
        "position": 9,
        "original_position": 9,
        "commit_id": H2,
        "original_commit_id": H2,
        "user": user(author),
        "body": body,
        "created_at": at,
        "updated_at": at,
        "html_url": html,
        "pull_request_url": "%s/repos/acme/api/pulls/7" % API,
        "author_association": "MEMBER",
        "_links": {
            "self": {"href": u},
            "html": {"href": html},
            "pull_request": {"href": "%s/repos/acme/api/pulls/7" % API},
        },
        "reactions": reactions(u),
        "start_line": None,
        "original_start_line": None,
        "start_side": None,
        "line": 46,
        "original_line": 46,
        "side": "RIGHT",
        "subject_type": "line",
    }


def workflow_run(head_sha, status, conclusion, event, prs, at, run_started_at):
    run_id = 12000000042
    u = "%s/repos/acme/api/actions/runs/%d" % (API, run_id)
    return {
        "id": run_id,
        "name": "CI",
        "node_id": node_id("WorkflowRun", run_id),
        "head_branch": "feature/retry-backoff",
        "head_sha": head_sha,
        "path": ".github/workflows/ci.yml",
        "display_title": COMMITS[head_sha][1] if event == "push" else PRS[("acme/api", 7)]["title"],
        "run_number": 311,
        "event": event,
        "status": status,
        "conclusion": conclusion,
        "workflow_id": 88000001,
        "check_suite_id": 3300000077,
        "check_suite_node_id": node_id("CheckSuite", 3300000077),
        "url": u,
        "html_url": "%s/acme/api/actions/runs/%d" % (WEB, run_id),
        "pull_requests": prs,
        "created_at": "2026-11-20T10:42:13Z",
        "updated_at": at,
        "actor": user("alice"),
        "run_attempt": 1,
        "referenced_workflows": [],
        "run_started_at": run_started_at,
        "triggering_actor": user("alice"),
        "jobs_url": u + "/jobs",
        "logs_url": u + "/logs",
        "check_suite_url": "%s/repos/acme/api/check-suites/3300000077" % API,
        "artifacts_url": u + "/artifacts",
        "cancel_url": u + "/cancel",
        "rerun_url": u + "/rerun",
        "previous_attempt_url": None,
        "workflow_url": "%s/repos/acme/api/actions/workflows/88000001" % API,
        "head_commit": head_commit(head_sha),
        "repository": repo("acme", "api", style="minimal"),
        "head_repository": repo("acme", "api", style="minimal"),
    }


def workflow():
    wid = 88000001
    return {
        "id": wid,
        "node_id": node_id("Workflow", wid),
        "name": "CI",
        "path": ".github/workflows/ci.yml",
        "state": "active",
        "created_at": "2024-03-04T09:20:00.000Z",
        "updated_at": "2026-09-12T14:03:27.000Z",
        "url": "%s/repos/acme/api/actions/workflows/%d" % (API, wid),
        "html_url": "%s/acme/api/blob/main/.github/workflows/ci.yml" % WEB,
        "badge_url": "%s/acme/api/workflows/CI/badge.svg" % WEB,
    }


def payloads():
    """file name -> payload, in the order of the README table."""
    out = {}
    lbl = [enhancement()]

    out["pull_request.opened.json"] = pr_event(
        "opened",
        "alice",
        pull_request("acme/api", 7, H1, "2026-11-20T10:15:00Z", requested_reviewers=["bob"], stats=(1, 3, 1, 0), fresh=True),
    )

    out["pull_request.synchronize.json"] = pr_event(
        "synchronize",
        "alice",
        pull_request("acme/api", 7, H2, "2026-11-20T10:42:10Z", requested_reviewers=["bob"], labels=lbl, stats=(2, 4, 1, 0)),
        before=H1,
        after=H2,
    )

    out["pull_request.closed.json"] = pr_event(
        "closed",
        "bob",
        pull_request(
            "acme/api", 7, H2, "2026-11-20T11:20:00Z", labels=lbl, state="closed", merged_by="bob", stats=(2, 4, 1, 1)
        ),
    )

    out["pull_request.labeled.json"] = pr_event(
        "labeled",
        "bob",
        pull_request("acme/api", 7, H2, "2026-11-20T10:50:30Z", requested_reviewers=["bob"], labels=lbl, stats=(2, 4, 1, 0)),
        label=enhancement(),
    )

    out["pull_request.assigned.json"] = pr_event(
        "assigned",
        "alice",
        pull_request(
            "acme/api",
            7,
            H2,
            "2026-11-20T10:52:00Z",
            requested_reviewers=["bob"],
            assignee="carol",
            assignees=["carol"],
            labels=lbl,
            stats=(2, 4, 1, 0),
        ),
        assignee=user("carol"),
    )

    out["pull_request.review_requested.json"] = pr_event(
        "review_requested",
        "alice",
        pull_request(
            "acme/api", 7, H2, "2026-11-20T10:53:00Z", requested_reviewers=["bob", "carol"], labels=lbl, stats=(2, 4, 1, 0)
        ),
        requested_reviewer=user("carol"),
    )

    review_id = 2600000011
    short_pr = pull_request("acme/api", 7, H2, "2026-11-20T11:12:00Z", labels=lbl, webhook_full=False)
    rhtml = "%s/acme/api/pull/7#pullrequestreview-%d" % (WEB, review_id)
    out["pull_request_review.submitted.json"] = envelope(
        "acme/api",
        "bob",
        action="submitted",
        review={
            "id": review_id,
            "node_id": node_id("PullRequestReview", review_id),
            "user": user("bob"),
            "body": "Looks good.",
            "commit_id": H2,
            "submitted_at": "2026-11-20T11:12:00Z",
            "state": "approved",
            "html_url": rhtml,
            "pull_request_url": "%s/repos/acme/api/pulls/7" % API,
            "author_association": "MEMBER",
            "_links": {
                "html": {"href": rhtml},
                "pull_request": {"href": "%s/repos/acme/api/pulls/7" % API},
            },
        },
        pull_request=short_pr,
    )

    out["pull_request_review_comment.created.json"] = envelope(
        "acme/api",
        "bob",
        action="created",
        comment=review_comment(
            2700000021, 2600000010, "bob", "Could this retry forever? cc @carol", "2026-11-20T11:02:00Z"
        ),
        pull_request=pull_request("acme/api", 7, H2, "2026-11-20T11:02:00Z", labels=lbl, webhook_full=False),
    )

    out["pull_request_review_thread.resolved.json"] = envelope(
        "acme/api",
        "alice",
        action="resolved",
        pull_request=pull_request("acme/api", 7, H2, "2026-11-20T11:10:00Z", labels=lbl, webhook_full=False),
        thread={
            "node_id": "PRRT_kwDOKlq4gc5hQm7x",
            "comments": [
                review_comment(
                    2700000022,
                    2600000010,
                    "bob",
                    "The attempt cap should come from the config file, not a constant.",
                    "2026-11-20T11:03:30Z",
                )
            ],
        },
    )

    out["issue_comment.created.on-pull-request.json"] = envelope(
        "acme/api",
        "bob",
        action="created",
        issue=issue(
            "acme/api",
            7,
            2200000007,
            PRS[("acme/api", 7)]["title"],
            "alice",
            PRS[("acme/api", 7)]["body"],
            "2026-11-20T11:15:00Z",
            labels=lbl,
            as_pr=True,
            comments=1,
        ),
        comment=comment(
            "acme/api", 7, 2800000031, "bob", "Ready to merge once CI is green. @alice", "2026-11-20T11:15:00Z", as_pr=True
        ),
    )

    out["issue_comment.created.json"] = envelope(
        "acme/api",
        "alice",
        action="created",
        issue=issue(
            "acme/api",
            12,
            2200000012,
            "Document the retry settings",
            "carol",
            "The new retry settings are not in the configuration reference yet.",
            "2026-11-20T09:30:00Z",
            labels=[label("acme/api", 5500000102, "documentation", "0075ca", "Improvements or additions to documentation", True)],
            comments=1,
            milestone=milestone("acme/api", 3, 9100000003, "0.5", "bob", 6, 11, "2026-12-15T08:00:00Z"),
        ),
        comment=comment("acme/api", 12, 2800000032, "alice", "Thanks!", "2026-11-20T09:30:00Z"),
    )

    pr7 = [pr_summary("acme/api", 7, H2)]
    out["check_run.completed.json"] = envelope(
        "acme/api",
        "hookfan-ci[bot]",
        action="completed",
        check_run=check_run(
            H2, "completed", "success", pr7, "2026-11-20T10:42:15Z", "2026-11-20T10:46:27Z", "2026-11-20T10:46:30Z"
        ),
    )

    out["check_run.created.no-pull-requests.json"] = envelope(
        "acme/api",
        "hookfan-ci[bot]",
        action="created",
        check_run=check_run(H2, "queued", None, [], "2026-11-20T10:42:15Z", None, "2026-11-20T10:42:15Z"),
    )

    out["check_suite.completed.json"] = envelope(
        "acme/api",
        "hookfan-ci[bot]",
        action="completed",
        check_suite=check_suite(
            H2, "completed", "success", [pr_summary("acme/api", 7, H2)], "2026-11-20T10:46:30Z", "2026-11-20T10:42:12Z"
        ),
    )

    out["check_suite.requested.no-pull-requests.json"] = envelope(
        "acme/api",
        "hookfan-ci[bot]",
        action="requested",
        check_suite=check_suite(H2, "queued", None, [], "2026-11-20T10:42:12Z", "2026-11-20T10:42:12Z"),
    )

    u = "%s/repos/acme/api" % API
    tree, message, login, ts = COMMITS[H2]
    status_id = 31000000055
    out["status.json"] = envelope(
        "acme/api",
        "hookfan-ci[bot]",
        id=status_id,
        sha=H2,
        name="acme/api",
        target_url="https://ci.hookfan.example.com/runs/1187",
        avatar_url="https://avatars.githubusercontent.com/in/%d?v=4" % APP_ID,
        context="ci/build",
        description="Build and tests passed",
        state="success",
        commit={
            "sha": H2,
            "node_id": base64.b64encode(("06:Commit%d:%s" % (REPOS["acme/api"]["id"], H2)).encode()).decode(),
            "commit": {
                "author": git_person(login, ts),
                "committer": git_person(login, ts),
                "message": message,
                "tree": {"sha": tree, "url": "%s/git/trees/%s" % (u, tree)},
                "url": "%s/git/commits/%s" % (u, H2),
                "comment_count": 0,
                "verification": {
                    "verified": False,
                    "reason": "unsigned",
                    "signature": None,
                    "payload": None,
                    "verified_at": None,
                },
            },
            "url": "%s/commits/%s" % (u, H2),
            "html_url": "%s/acme/api/commit/%s" % (WEB, H2),
            "comments_url": "%s/commits/%s/comments" % (u, H2),
            "author": user(login),
            "committer": user(login),
            "parents": [
                {"sha": H1, "url": "%s/commits/%s" % (u, H1), "html_url": "%s/acme/api/commit/%s" % (WEB, H1)}
            ],
        },
        branches=[
            {
                "name": "feature/retry-backoff",
                "commit": {"sha": H2, "url": "%s/commits/%s" % (u, H2)},
                "protected": False,
            }
        ],
        created_at="2026-11-20T10:46:31+00:00",
        updated_at="2026-11-20T10:46:31+00:00",
    )

    out["workflow_run.completed.json"] = envelope(
        "acme/api",
        "alice",
        action="completed",
        workflow_run=workflow_run(
            H2, "completed", "success", "pull_request", [pr_summary("acme/api", 7, H2)], "2026-11-20T10:46:40Z", "2026-11-20T10:42:13Z"
        ),
        workflow=workflow(),
    )

    out["workflow_run.requested.no-pull-requests.json"] = envelope(
        "acme/api",
        "alice",
        action="requested",
        workflow_run=workflow_run(H2, "queued", None, "push", [], "2026-11-20T10:42:13Z", "2026-11-20T10:42:13Z"),
        workflow=workflow(),
    )

    commits = [
        push_commit("acme/api", PUSH_SHA_1, modified=["CHANGELOG.md"]),
        push_commit("acme/api", PUSH_SHA_2, modified=["Cargo.toml", "Cargo.lock"]),
    ]
    push = {
        "ref": "refs/heads/main",
        "before": MERGE_SHA,
        "after": PUSH_SHA_2,
        "repository": repo("acme", "api", style="push"),
        "pusher": {"name": "bob", "email": git_person("bob")["email"]},
        "organization": organization("acme"),
        "sender": user("bob"),
        "installation": installation(),
        "created": False,
        "deleted": False,
        "forced": False,
        "base_ref": None,
        "compare": "%s/acme/api/compare/%s...%s" % (WEB, MERGE_SHA[:12], PUSH_SHA_2[:12]),
        "commits": commits,
        "head_commit": dict(commits[-1]),
    }
    out["push.json"] = push

    hook_id = 510000001
    hu = "%s/repos/acme/api/hooks/%d" % (API, hook_id)
    out["ping.json"] = envelope(
        "acme/api",
        "alice",
        zen="Keep it logically awesome.",
        hook_id=hook_id,
        hook={
            "type": "Repository",
            "id": hook_id,
            "name": "web",
            "active": True,
            "events": ["*"],
            "config": {
                "content_type": "json",
                "insecure_ssl": "0",
                "url": "https://hookfan.example.com/webhook",
                "secret": "********",
            },
            "updated_at": "2026-11-20T09:00:00Z",
            "created_at": "2026-11-20T09:00:00Z",
            "url": hu,
            "test_url": hu + "/test",
            "ping_url": hu + "/pings",
            "deliveries_url": hu + "/deliveries",
            "last_response": {"code": None, "status": "unused", "message": None},
        },
    )

    out["pull_request.opened.private-repo.json"] = pr_event(
        "opened",
        "carol",
        pull_request(
            "widgets/secret-sauce", 3, PRIVATE_HEAD, "2026-11-20T12:00:00Z", requested_reviewers=["bob"], stats=(1, 1, 1, 0), fresh=True
        ),
        full_name="widgets/secret-sauce",
    )
    return out


# ---------------------------------------------------------------------------
# Self-checks, README, main
# ---------------------------------------------------------------------------

ACME_OK = re.compile(
    r'"acme"'  # org login / name
    r"|acme/api"  # full_name, URLs
    r"|/acme\b"  # users/acme, orgs/acme, ...
    r"|acme:"  # head/base label
)


def self_check(name, obj, text):
    """Guards the promises the tests rely on."""
    # "acme" only as the org login or in acme URLs / names (load tools rewrite it).
    stripped = ACME_OK.sub("", text)
    assert "acme" not in stripped.lower(), "%s: stray 'acme' in %r" % (
        name,
        stripped[max(0, stripped.lower().find("acme") - 40) : stripped.lower().find("acme") + 40],
    )
    # No '@' in PR / issue / review bodies; comment bodies only as specified.
    for key in ("pull_request", "issue", "review"):
        body = (obj.get(key) or {}).get("body")
        assert not body or "@" not in body, "%s: '@' in %s.body" % (name, key)
    for c in (obj.get("thread") or {}).get("comments", []):
        assert "@" not in c["body"], "%s: '@' in thread comment" % name
    assert obj["installation"]["id"] == INSTALLATION_ID
    assert "repository" in obj and "sender" in obj and "organization" in obj


def describe(name, obj):
    """The README's "what it carries" cell, read back from the payload."""
    parts = []
    pr = obj.get("pull_request")
    if isinstance(pr, dict) and pr.get("html_url"):
        parts.append("`pull_request.html_url` %s" % pr["html_url"])
        if "head" in pr:
            parts.append("head.sha %s" % short(pr["head"]["sha"]))
    iss = obj.get("issue")
    if iss:
        if "pull_request" in iss:
            parts.append("`issue.html_url` %s (`issue.pull_request` present)" % iss["html_url"])
        else:
            parts.append("`issue.html_url` %s (no `issue.pull_request`)" % iss["html_url"])
    for key in ("check_run", "check_suite", "workflow_run"):
        o = obj.get(key)
        if o:
            prs = o["pull_requests"]
            if prs:
                parts.append("`%s.pull_requests[0].url` %s (number %d)" % (key, prs[0]["url"], prs[0]["number"]))
            else:
                parts.append("`%s.pull_requests` []" % key)
            parts.append("head_sha %s" % short(o["head_sha"]))
    if name.startswith("status"):
        parts.append("sha %s, state %s, context %s" % (short(obj["sha"]), obj["state"], obj["context"]))
    if name.startswith("push"):
        parts.append("%s, %d commits, after %s" % (obj["ref"], len(obj["commits"]), short(obj["after"])))
    if name.startswith("ping"):
        parts.append("hook %s, no PR" % obj["hook"]["config"]["url"])
    parts.append("private %s" % str(obj["repository"]["private"]).lower())
    return "; ".join(parts)


def short(sha):
    names = {H1: "H1", H2: "H2"}
    return names.get(sha, "`%s`" % sha[:7])


def readme(files):
    lines = [
        "# hookfan's webhook payload fixtures",
        "",
        "These are hookfan's own payloads, written for this project (not copies of",
        "anyone else's examples). They are generated by `python3 scripts/gen-fixtures.py`;",
        "`python3 scripts/gen-fixtures.py --check` exits 1 when a committed file (this",
        "README included) differs from what the script would write. Edit the script,",
        "not the files.",
        "",
        "They are shaped like GitHub's webhook payloads (same field names and nesting,",
        "every `*_url` field, `node_id`s, timestamps; pretty-printed with 2-space",
        "indentation), with fixed ids and timestamps.",
        "",
        "Naming: `<X-GitHub-Event>.<action>[.<variant>].json`, or `<X-GitHub-Event>[.<variant>].json`",
        "for events without an action (`status`, `push`, `ping`).",
        "",
        "The world: organization `acme` (id 9001) with public repository `acme/api`;",
        "organization `widgets` (id 9002) with private repository `widgets/secret-sauce`;",
        "users `alice`, `bob`, `carol` and the bot `hookfan-ci[bot]`; installation 4242.",
        "Pull request `acme/api#7` (https://github.com/acme/api/pull/7) by alice, head branch",
        "`feature/retry-backoff` into `main`; head sha H1 = `%s` when opened," % H1,
        "H2 = `%s` after `synchronize`." % H2,
        "Every payload carries `repository`, `organization`, `sender` and `installation`.",
        "`@` appears in a comment body only in `pull_request_review_comment.created.json`",
        "(`@carol`) and `issue_comment.created.on-pull-request.json` (`@alice`).",
        "",
        "| file | X-GitHub-Event | what it carries | bytes |",
        "|---|---|---|---|",
    ]
    for name, data in files.items():
        obj = json.loads(data)
        event = name.split(".")[0]
        lines.append("| `%s` | `%s` | %s | %d |" % (name, event, describe(name, obj), len(data)))
    lines.append("")
    return "\n".join(lines).encode()


def render():
    files = {}
    for name, obj in payloads().items():
        text = json.dumps(obj, indent=2) + "\n"
        self_check(name, obj, text)
        files[name] = text.encode()
    out = dict(files)
    out["README.md"] = readme(files)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on any difference")
    args = ap.parse_args()
    want = render()
    if args.check:
        bad = []
        for name, data in want.items():
            path = OUT_DIR / name
            if not path.is_file():
                bad.append("%s (missing)" % name)
            elif path.read_bytes() != data:
                bad.append("%s (differs)" % name)
        if OUT_DIR.is_dir():
            for path in sorted(OUT_DIR.iterdir()):
                if path.name not in want:
                    bad.append("%s (not generated by this script)" % path.name)
        if bad:
            print("fixtures out of date in %s:" % OUT_DIR, file=sys.stderr)
            for b in bad:
                print("  " + b, file=sys.stderr)
            print("run: python3 scripts/gen-fixtures.py", file=sys.stderr)
            return 1
        print("fixtures up to date (%d files)" % len(want))
        return 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, data in want.items():
        (OUT_DIR / name).write_bytes(data)
    print("wrote %d files to %s" % (len(want), OUT_DIR))
    return 0


if __name__ == "__main__":
    sys.exit(main())
