#################################################################################
# GLOBALS                                                                       #
#################################################################################

# Every target calls the `fraudlab` CLI; the logic lives in Python, not here.
PYTHON_INTERPRETER ?= python3
# Resolved when a recipe runs, so a uv installed by `ensure-uv` a moment earlier is found.
UV = $(or $(shell command -v uv 2>/dev/null),$(shell $(PYTHON_INTERPRETER) -m site --user-base 2>/dev/null)/bin/uv)
FRAUDLAB = $(UV) run fraudlab

# Optional arguments: make logs C=serving N=100, make simulate RPS=20 N=500,
# make loadtest RPS=100 DURATION=30, make test ARGS="-m 'not slow'".
C ?=
N ?=
RPS ?=
DURATION ?=
ARGS ?=
# make up STACK=compose (and status, logs, loadtest, monitor, retrain, …): the
# containerised stack (docker-compose.yml) instead of local processes; the CLI reads
# FRAUDLAB_STACK. make down STACK=compose VOLUMES=1 also deletes its data.
STACK ?=
VOLUMES ?=
ifneq ($(STACK),)
export FRAUDLAB_STACK := $(STACK)
endif
# make break S=<scenario id> SEED=<n> (the seed picks the variant; random when omitted).
S ?=
SEED ?=

.DEFAULT_GOAL := help

#################################################################################
# STACK                                                                         #
#################################################################################

## Start the stack (STACK=compose: containers; installs uv and dependencies first; idempotent)
.PHONY: up
up: sync
	$(FRAUDLAB) up

## Also start Airflow's UI and scheduler (bound to 127.0.0.1; ~0.7 GB, not part of `up`)
.PHONY: airflow-ui
airflow-ui: sync
	$(FRAUDLAB) up --airflow

## Stop every process the stack started, nothing else (STACK=compose VOLUMES=1: wipe data)
.PHONY: down
down:
	$(FRAUDLAB) down $(if $(VOLUMES),--volumes)

## Show each component's health, the prediction log size and the label count
.PHONY: status
status:
	$(FRAUDLAB) status

## Show the scheduled jobs and whether each is paused (`fraudlab schedule pause|resume NAME`)
.PHONY: schedules
schedules:
	$(FRAUDLAB) schedule

## Show the tail of the logs (C=a component of `make status`, N=lines)
.PHONY: logs
logs:
	$(FRAUDLAB) logs $(C) $(if $(N),--lines $(N))

## Write the containerised stack's generated credentials into .env (only what is missing)
.PHONY: env
env: sync
	$(FRAUDLAB) env

## Build the containerised stack's images (a local Debian base when no registry answers)
.PHONY: images
images: sync
	$(FRAUDLAB) images

#################################################################################
# PIPELINE STAGES                                                               #
#################################################################################

## Generate the synthetic world and the offline feature tables
.PHONY: data
data:
	$(FRAUDLAB) data

## Apply the Feast definitions and materialise the online store up to the clock
.PHONY: features
features:
	$(FRAUDLAB) features

## Train, evaluate and register a model, and make it the champion (needs MLflow up)
.PHONY: train
train:
	$(FRAUDLAB) train

## Gate the challenger against the champion on a fresh holdout; promote only on PASS
.PHONY: promote
promote:
	$(FRAUDLAB) promote

## Move the champion back to the version the last promotion replaced
.PHONY: rollback
rollback:
	$(FRAUDLAB) rollback

## Ship the working tree's serving code to serving as a new release (DIFF=1: only show the difference)
.PHONY: deploy
deploy:
	$(FRAUDLAB) deploy $(if $(DIFF),--diff)

#################################################################################
# TRAFFIC                                                                       #
#################################################################################

## Replay future transactions against serving in the foreground (RPS=, N=max requests)
.PHONY: simulate
simulate:
	$(FRAUDLAB) simulate $(if $(RPS),--rps $(RPS)) $(if $(N),--max-requests $(N))

## Bounded Locust run against serving; p99 vs the latency budget (RPS=, DURATION=seconds)
.PHONY: loadtest
loadtest:
	$(FRAUDLAB) loadtest $(if $(RPS),--rps $(RPS)) $(if $(DURATION),--seconds $(DURATION))

## Measure every performance target side by side: ratios, p99s (needs `make up`; ~2 min)
.PHONY: bench
bench:
	$(FRAUDLAB) bench $(if $(RPS),--rps $(RPS)) $(if $(DURATION),--seconds $(DURATION))

#################################################################################
# MONITORING                                                                    #
#################################################################################

## Run the monitors: drift, skew, performance, freshness, latency, quality (M=all or one)
.PHONY: monitor
monitor:
	$(FRAUDLAB) monitor $(if $(M),$(M))

#################################################################################
# DAGS                                                                          #
#################################################################################

# Each runs one DAG of dags/ with `airflow dags test` (Airflow home: var/airflow, SQLite).

## DAG fraudlab_materialize: apply Feast definitions, materialise up to the clock
.PHONY: materialize
materialize:
	$(FRAUDLAB) materialize

## DAG fraudlab_retrain: validate, training set, train, evaluate, gates, register, promote, reload
.PHONY: retrain
retrain:
	$(FRAUDLAB) retrain

## DAG fraudlab_monitor: every monitor; a drift alert triggers fraudlab_retrain, run next
.PHONY: monitor-dag
monitor-dag:
	$(FRAUDLAB) monitor-dag

#################################################################################
# SCENARIOS                                                                     #
#################################################################################

# The interview verbs. `@` and `--quiet`: neither make nor uv may echo anything around the
# ticket (make would print the command line, scenario id included, into the candidate's
# terminal). hint, reveal, reset and list ask for the passphrase while the lab is sealed.
# STACK=compose: each verb runs in a one-off lab runner container of the containerised stack
# (break and reset in the one with the Docker socket); the README says what the candidate sees.
# What make hands down (its flags, and command-line variables such as S=03 SEED=1) must not
# reach the processes a verb starts or restarts (serving, the traffic simulator): a candidate can
# read any process's environment in /proc/<pid>/environ.
SCRUB_MAKE_ENV = env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES -u S -u SEED
LAB = @$(SCRUB_MAKE_ENV) $(UV) run --quiet fraudlab lab

## List the scenarios: id, title, kind, difficulty, seniority, time box (never the cause)
.PHONY: scenarios
scenarios:
	$(LAB) list

## Check the baseline, inject scenario S (SEED= picks the variant), print the ticket only
.PHONY: break
break:
	$(LAB) break $(S) $(if $(SEED),--seed $(SEED))

## Check the candidate's fix: OK/NO per check, exit 0 only when every check passes
.PHONY: verify
verify:
	$(LAB) verify

## Give the next hint of the active scenario, vague to specific (interviewer)
.PHONY: hint
hint:
	$(LAB) hint

## Show the cause, diagnosis path, reference fix, rubric and follow-ups (interviewer)
.PHONY: reveal
reveal:
	$(LAB) reveal

## Return to the verified healthy baseline from any state (also when nothing is broken)
.PHONY: reset
reset:
	$(LAB) reset

## Encrypt the interviewer material and the scenario state with a passphrase (hand-over)
.PHONY: seal
seal:
	$(LAB) seal

## Decrypt what `make seal` encrypted
.PHONY: unseal
unseal:
	$(LAB) unseal

# make scorecard: the active session, else the last (SESSION=<id> another; LIST=1 lists them);
# MARK="detection=mid mitigation=senior overall=mid" and NOTE="..." fill the marks (asked for
# at a terminal otherwise); it is written under <home>/lab/scorecards/ (OUT=<dir> elsewhere).
LIST ?=
SESSION ?=
MARK ?=
NOTE ?=
OUT ?=

## Interviewer: a session's scorecard — timeline, rubric, your marks (MARK=, NOTE=; LIST=1: sessions)
.PHONY: scorecard
scorecard:
	$(LAB) scorecard $(if $(LIST),--list) $(if $(SESSION),--session $(SESSION)) \
		$(foreach m,$(MARK),--mark $(m)) $(if $(NOTE),--note "$$NOTE") $(if $(OUT),--out $(OUT))

#################################################################################
# LAB MODE                                                                      #
#################################################################################

# Onboarding: the scenarios as a curriculum a learner works through alone, hints and answers on
# demand — no passphrase, so a sealed lab refuses these. Progress per learner (LEARNER=<name>,
# default: the user running make) lives in <home>/lab/progress/ and survives `make down`/`up`.
LEARNER ?=
YES ?=
LEARN = @$(UV) run --quiet fraudlab lab learn
LEARNER_FLAG = $(if $(LEARNER),--learner $(LEARNER))

## Your curriculum: scenarios by family, easy first, with your state, time spent and hints used
.PHONY: lab
lab:
	$(LEARN) list $(LEARNER_FLAG)

## Start scenario S (empty: the next one of the curriculum), print its ticket
.PHONY: lab-start
lab-start:
	$(LEARN) start $(S) $(LEARNER_FLAG) $(if $(SEED),--seed $(SEED))

## The next hint of your scenario, vague first
.PHONY: lab-hint
lab-hint:
	$(LEARN) hint $(LEARNER_FLAG)

## Check your fix, OK/NO per check (exit 0 when all pass; solved is recorded)
.PHONY: lab-check
lab-check:
	$(LEARN) check $(LEARNER_FLAG)

## Show the answer after a confirmation (YES=1 skips it); counts as given up
.PHONY: lab-giveup
lab-giveup:
	$(LEARN) giveup $(LEARNER_FLAG) $(if $(YES),--yes)

## Undo your scenario, back to the healthy baseline (your progress stays)
.PHONY: lab-reset
lab-reset:
	$(LEARN) reset $(LEARNER_FLAG)

## Write your progress as markdown and HTML under <home>/lab/reports/ (paths printed)
.PHONY: lab-report
lab-report:
	$(LEARN) report $(LEARNER_FLAG)

#################################################################################
# DEVELOPMENT                                                                   #
#################################################################################

## Run the test suite (fails when no test is collected: pytest exits 5; ARGS= for more)
.PHONY: test
test: sync
	$(UV) run pytest --strict-markers $(ARGS)

## Lint: ruff (style, formatting) and the layer contract (import-linter, pyproject.toml)
.PHONY: lint
lint:
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run lint-imports --no-cache

## Format the code and apply safe lint fixes with ruff
.PHONY: format
format:
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

## Stop the stack, then delete var/ (all generated data, models and logs) WITHOUT ASKING
.PHONY: clean
clean: down
	rm -rf var/ .pytest_cache .ruff_cache

## Install uv if it is missing
.PHONY: ensure-uv
ensure-uv:
	@# The last fallback is for distributions that mark their Python externally managed
	@# (PEP 668): a --user install of one tool does not touch the system's packages.
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || { \
		echo "uv not found: installing it with pip (user site)"; \
		$(PYTHON_INTERPRETER) -m pip install --user uv || pip install uv \
		|| $(PYTHON_INTERPRETER) -m pip install --user --break-system-packages uv; }

## Install the locked dependencies into .venv (pre-compiled: imports start twice as fast)
.PHONY: sync
sync: ensure-uv
	@# --check first: compiling 35k files costs ~8 s even when nothing changed.
	@if [ ! -f uv.lock ]; then echo "no uv.lock: resolving afresh"; $(UV) sync --compile-bytecode; \
	elif ! $(UV) sync --frozen --check >/dev/null 2>&1; then $(UV) sync --compile-bytecode --frozen; fi

#################################################################################
# Self Documenting Commands                                                     #
#################################################################################

# Prints each `## description` with the target below it, grouped under the banners above.
define PRINT_HELP_PYSCRIPT
import re, sys
print("fraudlab: make <target> [VAR=value]")
section = None
lines = sys.stdin.read().splitlines()
for i, line in enumerate(lines):
    banner = re.match(r"^# ([A-Za-z][A-Za-z ]*?)\s+#$$", line)
    if banner and banner.group(1) not in ("GLOBALS", "Self Documenting Commands"):
        section = banner.group(1)
        print(f"\n{section}")
    doc = re.match(r"^## (.*)", line)
    if doc:
        target = next((m.group(1) for l in lines[i + 1:]
                       if (m := re.match(r"^([a-zA-Z_-]+):", l))), None)
        if target:
            print(f"  {target:<12} {doc.group(1)}")
endef
export PRINT_HELP_PYSCRIPT

## Show this help
.PHONY: help
help:
	@$(PYTHON_INTERPRETER) -c "$${PRINT_HELP_PYSCRIPT}" < $(MAKEFILE_LIST)
