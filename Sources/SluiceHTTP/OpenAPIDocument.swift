/// The API's OpenAPI 3.1 document, served at `/api/openapi.json`: the source of truth for the routes.
/// The tests request every path and method it lists and check the answers against it; edit it together
/// with the routes in `API.swift` (see docs/api.md).
enum OpenAPIDocument {
    static let json = #"""
{
  "openapi": "3.1.0",
  "info": {
    "title": "Sluice HTTP API",
    "version": "1.0.0",
    "description": "Runs, events, logs, progress, sessions, schedules and actions of a Sluice state store. Served by `sluice serve --http HOST:PORT` and `sluice ui`. Changes need `Authorization: Bearer TOKEN` (`sluice token create NAME`); reads too unless the server is bound to loopback. Errors are `{error, detail}`."
  },
  "servers": [
    {
      "url": "/"
    }
  ],
  "paths": {
    "/api/health": {
      "get": {
        "operationId": "health",
        "summary": "The server is up.",
        "security": [
          {}
        ],
        "responses": {
          "200": {
            "description": "Up.",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object",
                  "required": [
                    "status"
                  ],
                  "properties": {
                    "status": {
                      "const": "ok"
                    }
                  }
                }
              }
            }
          }
        }
      }
    },
    "/api/openapi.json": {
      "get": {
        "operationId": "openapi",
        "summary": "This document.",
        "security": [
          {}
        ],
        "responses": {
          "200": {
            "description": "The OpenAPI document.",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object"
                }
              }
            }
          }
        }
      }
    },
    "/api/runs": {
      "get": {
        "operationId": "listRuns",
        "summary": "Runs, newest first, filtered and paginated by cursor.",
        "security": [
          {},
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "pipeline",
            "in": "query",
            "schema": {
              "type": "string",
              "minLength": 1,
              "maxLength": 200
            }
          },
          {
            "name": "status",
            "in": "query",
            "description": "One or more statuses, comma-separated.",
            "schema": {
              "type": "string",
              "pattern": "^(pending|running|success|partial_success|failed|cancelled)(,(pending|running|success|partial_success|failed|cancelled))*$"
            }
          },
          {
            "name": "created_after",
            "in": "query",
            "description": "ISO 8601; runs created at or after.",
            "schema": {
              "type": "string",
              "format": "date-time"
            }
          },
          {
            "name": "created_before",
            "in": "query",
            "description": "ISO 8601; runs created before.",
            "schema": {
              "type": "string",
              "format": "date-time"
            }
          },
          {
            "name": "limit",
            "in": "query",
            "schema": {
              "type": "integer",
              "minimum": 1,
              "maximum": 200,
              "default": 50
            }
          },
          {
            "name": "cursor",
            "in": "query",
            "description": "`next_cursor` of the previous page.",
            "schema": {
              "type": "string",
              "pattern": "^[A-Za-z0-9-]{1,64}$"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "A page of runs.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/RunPage"
                }
              }
            },
            "links": {
              "getRun": {
                "operationId": "getRun",
                "parameters": {
                  "id": "$response.body#/runs/0/run_id"
                }
              },
              "listEvents": {
                "operationId": "listEvents",
                "parameters": {
                  "id": "$response.body#/runs/0/run_id"
                }
              },
              "streamEvents": {
                "operationId": "streamEvents",
                "parameters": {
                  "id": "$response.body#/runs/0/run_id"
                }
              },
              "getProgress": {
                "operationId": "getProgress",
                "parameters": {
                  "id": "$response.body#/runs/0/run_id"
                }
              },
              "cancelRun": {
                "operationId": "cancelRun",
                "parameters": {
                  "id": "$response.body#/runs/0/run_id"
                }
              },
              "retryRun": {
                "operationId": "retryRun",
                "parameters": {
                  "id": "$response.body#/runs/0/run_id"
                }
              },
              "resumeRun": {
                "operationId": "resumeRun",
                "parameters": {
                  "id": "$response.body#/runs/0/run_id"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/InvalidRequest"
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "503": {
            "$ref": "#/components/responses/StoreUnavailable"
          }
        }
      }
    },
    "/api/runs/{id}": {
      "get": {
        "operationId": "getRun",
        "summary": "A run: stages, tasks, attempts, outcome, counters, progress (as `sluice show --json`).",
        "security": [
          {},
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "A run id (`YYYYMMDD-HHMMSS-xxxxxx`).",
            "schema": {
              "type": "string",
              "pattern": "^[A-Za-z0-9-]{1,64}$"
            }
          },
          {
            "name": "all_tasks",
            "in": "query",
            "description": "List every task of fan-out stages, successful ones too.",
            "schema": {
              "type": "boolean",
              "default": false
            }
          }
        ],
        "responses": {
          "200": {
            "description": "The run's report.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/RunReport"
                }
              }
            },
            "links": {
              "getTaskLog": {
                "operationId": "getTaskLog",
                "parameters": {
                  "id": "$response.body#/run_id",
                  "task": "$response.body#/stages/0/tasks/0/id"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/InvalidRequest"
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "404": {
            "$ref": "#/components/responses/NotFound"
          },
          "503": {
            "$ref": "#/components/responses/StoreUnavailable"
          }
        }
      }
    },
    "/api/runs/{id}/events": {
      "get": {
        "operationId": "listEvents",
        "summary": "A run's events, oldest first.",
        "security": [
          {},
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "A run id (`YYYYMMDD-HHMMSS-xxxxxx`).",
            "schema": {
              "type": "string",
              "pattern": "^[A-Za-z0-9-]{1,64}$"
            }
          },
          {
            "name": "after",
            "in": "query",
            "description": "Only events with a greater id.",
            "schema": {
              "type": "integer",
              "format": "int64",
              "maximum": 9223372036854775807,
              "minimum": 0,
              "default": 0
            }
          },
          {
            "name": "limit",
            "in": "query",
            "schema": {
              "type": "integer",
              "minimum": 1,
              "maximum": 1000,
              "default": 200
            }
          }
        ],
        "responses": {
          "200": {
            "description": "A page of events.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/EventPage"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/InvalidRequest"
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "404": {
            "$ref": "#/components/responses/NotFound"
          },
          "503": {
            "$ref": "#/components/responses/StoreUnavailable"
          }
        }
      }
    },
    "/api/runs/{id}/events/stream": {
      "get": {
        "operationId": "streamEvents",
        "summary": "A run's events as Server-Sent Events, in order, until the run ended (then an `end` event).",
        "security": [
          {},
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "A run id (`YYYYMMDD-HHMMSS-xxxxxx`).",
            "schema": {
              "type": "string",
              "pattern": "^[A-Za-z0-9-]{1,64}$"
            }
          },
          {
            "name": "after",
            "in": "query",
            "schema": {
              "type": "integer",
              "format": "int64",
              "maximum": 9223372036854775807,
              "minimum": 0,
              "default": 0
            }
          },
          {
            "name": "Last-Event-ID",
            "in": "header",
            "schema": {
              "type": "string",
              "pattern": "^[0-9]{1,18}$"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "`id: N`, `event: NAME`, `data: Event` (JSON) per event; last `event: end` with `data: {\"status\": …}`.",
            "content": {
              "text/event-stream": {
                "schema": {
                  "type": "object",
                  "properties": {
                    "id": {
                      "type": "string"
                    },
                    "event": {
                      "type": "string"
                    },
                    "data": {
                      "type": "string"
                    }
                  }
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/InvalidRequest"
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "404": {
            "$ref": "#/components/responses/NotFound"
          },
          "503": {
            "$ref": "#/components/responses/StoreUnavailable"
          }
        }
      }
    },
    "/api/runs/{id}/progress": {
      "get": {
        "operationId": "getProgress",
        "summary": "Done, expected, rate and ETA per stage with tasks.",
        "security": [
          {},
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "A run id (`YYYYMMDD-HHMMSS-xxxxxx`).",
            "schema": {
              "type": "string",
              "pattern": "^[A-Za-z0-9-]{1,64}$"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "Progress.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/ProgressPage"
                }
              }
            }
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "404": {
            "$ref": "#/components/responses/NotFound"
          },
          "503": {
            "$ref": "#/components/responses/StoreUnavailable"
          }
        }
      }
    },
    "/api/runs/{id}/tasks/{task}/logs": {
      "get": {
        "operationId": "getTaskLog",
        "summary": "A task's stdout or stderr: the last `tail` bytes, or followed until the attempt ended.",
        "security": [
          {},
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "A run id (`YYYYMMDD-HHMMSS-xxxxxx`).",
            "schema": {
              "type": "string",
              "pattern": "^[A-Za-z0-9-]{1,64}$"
            }
          },
          {
            "name": "task",
            "in": "path",
            "required": true,
            "description": "A task id (from the run's report).",
            "schema": {
              "type": "integer",
              "format": "int64",
              "maximum": 9223372036854775807,
              "minimum": 1
            }
          },
          {
            "name": "stream",
            "in": "query",
            "schema": {
              "type": "string",
              "enum": [
                "stdout",
                "stderr"
              ],
              "default": "stdout"
            }
          },
          {
            "name": "attempt",
            "in": "query",
            "description": "Default: the latest.",
            "schema": {
              "type": "integer",
              "format": "int64",
              "maximum": 9223372036854775807,
              "minimum": 1
            }
          },
          {
            "name": "tail",
            "in": "query",
            "description": "At most this many bytes, from the end.",
            "schema": {
              "type": "integer",
              "minimum": 0,
              "maximum": 1048576,
              "default": 65536
            }
          },
          {
            "name": "follow",
            "in": "query",
            "schema": {
              "type": "boolean",
              "default": false
            }
          }
        ],
        "responses": {
          "200": {
            "description": "The log text.",
            "content": {
              "text/plain": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/InvalidRequest"
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "404": {
            "$ref": "#/components/responses/NotFound"
          },
          "503": {
            "$ref": "#/components/responses/StoreUnavailable"
          }
        }
      }
    },
    "/api/pipelines": {
      "get": {
        "operationId": "listPipelines",
        "summary": "Pipelines served by `sluice serve` (none under `sluice ui`).",
        "security": [
          {},
          {
            "bearer": []
          }
        ],
        "responses": {
          "200": {
            "description": "Pipelines.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/PipelineList"
                }
              }
            },
            "links": {
              "triggerRun": {
                "operationId": "triggerRun",
                "parameters": {
                  "name": "$response.body#/items/0/name"
                }
              }
            }
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          }
        }
      }
    },
    "/api/schedules": {
      "get": {
        "operationId": "listSchedules",
        "summary": "Schedules served, with their next fire time.",
        "security": [
          {},
          {
            "bearer": []
          }
        ],
        "responses": {
          "200": {
            "description": "Schedules.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/ScheduleList"
                }
              }
            }
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          }
        }
      }
    },
    "/api/artifacts": {
      "get": {
        "operationId": "listArtifacts",
        "summary": "Recorded artifact versions (outputs declared versioned), newest first.",
        "security": [
          {},
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "pipeline",
            "in": "query",
            "description": "Only this pipeline's artifacts.",
            "schema": {
              "type": "string",
              "minLength": 1,
              "maxLength": 200
            }
          },
          {
            "name": "name",
            "in": "query",
            "description": "Only the artifact of this name (e.g. sales.sqlite).",
            "schema": {
              "type": "string",
              "minLength": 1,
              "maxLength": 200
            }
          },
          {
            "name": "run_id",
            "in": "query",
            "description": "Only versions published by this run.",
            "schema": {
              "type": "string",
              "minLength": 1,
              "maxLength": 200,
              "pattern": "^[A-Za-z0-9-]{1,64}$"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "Artifact versions.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/ArtifactList"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/InvalidParameters"
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          }
        }
      }
    },
    "/api/sessions": {
      "get": {
        "operationId": "listSessions",
        "summary": "Coordination sessions, newest first, with their members' runs and what is missing.",
        "security": [
          {},
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "name",
            "in": "query",
            "description": "Only sessions of this name.",
            "schema": {
              "type": "string",
              "minLength": 1,
              "maxLength": 200
            }
          },
          {
            "name": "status",
            "in": "query",
            "description": "Only sessions with this status.",
            "schema": {
              "$ref": "#/components/schemas/SessionStatus"
            }
          },
          {
            "name": "limit",
            "in": "query",
            "description": "How many sessions (1 to 200).",
            "schema": {
              "type": "integer",
              "minimum": 1,
              "maximum": 200,
              "default": 50
            }
          }
        ],
        "responses": {
          "200": {
            "description": "Sessions.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/SessionList"
                }
              }
            },
            "links": {
              "getSession": {
                "operationId": "getSession",
                "parameters": {
                  "id": "$response.body#/items/0/session_id"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/InvalidParameters"
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          }
        }
      }
    },
    "/api/sessions/{id}": {
      "get": {
        "operationId": "getSession",
        "summary": "A coordination session: members and their runs, what is missing, its notifications and their delivery.",
        "security": [
          {},
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "A session id (`NAME-YYYYMMDD-HHMMSS-xxxxxx`).",
            "schema": {
              "type": "string",
              "pattern": "^[A-Za-z0-9._-]{1,240}$"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "The session.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Session"
                }
              }
            }
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "404": {
            "description": "No such session.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/api/pipelines/{name}/runs": {
      "post": {
        "operationId": "triggerRun",
        "summary": "Start a run of a served pipeline.",
        "security": [
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "name",
            "in": "path",
            "required": true,
            "schema": {
              "type": "string",
              "minLength": 1
            }
          }
        ],
        "requestBody": {
          "required": false,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/TriggerBody"
              }
            }
          }
        },
        "responses": {
          "201": {
            "description": "Started.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/RunCreated"
                }
              }
            }
          },
          "200": {
            "description": "The idempotency key names an existing run.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/RunCreated"
                }
              }
            }
          },
          "202": {
            "description": "Queued behind an active run (overlap: queue).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/RunCreated"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/InvalidRequest"
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "404": {
            "description": "No such pipeline served here.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "Skipped: a run is active (overlap: skip).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "413": {
            "description": "Body over 1 MiB.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "$ref": "#/components/responses/StoreUnavailable"
          }
        }
      }
    },
    "/api/runs/{id}/cancel": {
      "post": {
        "operationId": "cancelRun",
        "summary": "Cancel a run.",
        "security": [
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "A run id (`YYYYMMDD-HHMMSS-xxxxxx`).",
            "schema": {
              "type": "string",
              "pattern": "^[A-Za-z0-9-]{1,64}$"
            }
          }
        ],
        "responses": {
          "202": {
            "description": "Cancel requested (or recorded, when nobody executed it).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/ActionAnswer"
                }
              }
            }
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "404": {
            "$ref": "#/components/responses/NotFound"
          },
          "409": {
            "$ref": "#/components/responses/Conflict"
          },
          "503": {
            "$ref": "#/components/responses/StoreUnavailable"
          }
        }
      }
    },
    "/api/runs/{id}/retry": {
      "post": {
        "operationId": "retryRun",
        "summary": "Run failed stages and items again with a fresh retry budget (`resume --retry-failed`); executed by this server.",
        "security": [
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "A run id (`YYYYMMDD-HHMMSS-xxxxxx`).",
            "schema": {
              "type": "string",
              "pattern": "^[A-Za-z0-9-]{1,64}$"
            }
          }
        ],
        "responses": {
          "202": {
            "description": "Retrying.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/ActionAnswer"
                }
              }
            }
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "404": {
            "$ref": "#/components/responses/NotFound"
          },
          "409": {
            "$ref": "#/components/responses/Conflict"
          },
          "503": {
            "$ref": "#/components/responses/StoreUnavailable"
          }
        }
      }
    },
    "/api/runs/{id}/resume": {
      "post": {
        "operationId": "resumeRun",
        "summary": "Finish a crashed or cancelled run (`resume`); executed by this server.",
        "security": [
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "A run id (`YYYYMMDD-HHMMSS-xxxxxx`).",
            "schema": {
              "type": "string",
              "pattern": "^[A-Za-z0-9-]{1,64}$"
            }
          }
        ],
        "responses": {
          "202": {
            "description": "Resuming.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/ActionAnswer"
                }
              }
            }
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "404": {
            "$ref": "#/components/responses/NotFound"
          },
          "409": {
            "$ref": "#/components/responses/Conflict"
          },
          "503": {
            "$ref": "#/components/responses/StoreUnavailable"
          }
        }
      }
    },
    "/metrics": {
      "get": {
        "operationId": "metrics",
        "summary": "Prometheus text format: runs and tasks by state and pipeline, attempts, retries, lease expiries, queue depth, trigger firings, task durations.",
        "security": [
          {},
          {
            "bearer": []
          }
        ],
        "responses": {
          "200": {
            "description": "Metrics.",
            "content": {
              "text/plain": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "401": {
            "$ref": "#/components/responses/Unauthorized"
          },
          "503": {
            "$ref": "#/components/responses/StoreUnavailable"
          }
        }
      }
    },
    "/": {
      "get": {
        "operationId": "dashboard",
        "summary": "The dashboard (HTML).",
        "security": [
          {}
        ],
        "responses": {
          "200": {
            "description": "The page.",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    },
    "/ui": {
      "get": {
        "operationId": "dashboardAlias",
        "summary": "The dashboard (HTML).",
        "security": [
          {}
        ],
        "responses": {
          "200": {
            "description": "The page.",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    }
  },
  "components": {
    "securitySchemes": {
      "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from `sluice token create NAME`."
      }
    },
    "schemas": {
      "Error": {
        "type": "object",
        "required": [
          "error",
          "detail"
        ],
        "properties": {
          "error": {
            "type": "string"
          },
          "detail": {
            "type": "string"
          }
        }
      },
      "RunSummary": {
        "type": "object",
        "required": [
          "run_id",
          "pipeline",
          "status",
          "trigger",
          "params",
          "created_at",
          "cancel_requested",
          "interrupted"
        ],
        "properties": {
          "run_id": {
            "type": "string"
          },
          "pipeline": {
            "type": "string"
          },
          "status": {
            "$ref": "#/components/schemas/RunStatus"
          },
          "trigger": {
            "type": "string"
          },
          "params": {
            "type": "object",
            "additionalProperties": {
              "type": "string"
            }
          },
          "created_at": {
            "type": "string"
          },
          "started_at": {
            "type": "string"
          },
          "finished_at": {
            "type": "string"
          },
          "duration_ms": {
            "type": "integer"
          },
          "cancel_requested": {
            "type": "boolean"
          },
          "interrupted": {
            "type": "boolean",
            "description": "Unfinished with nobody executing it: resume it."
          }
        }
      },
      "RunStatus": {
        "type": "string",
        "enum": [
          "pending",
          "running",
          "success",
          "partial_success",
          "failed",
          "cancelled"
        ]
      },
      "RunPage": {
        "type": "object",
        "required": [
          "runs"
        ],
        "properties": {
          "runs": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/RunSummary"
            }
          },
          "next_cursor": {
            "type": "string",
            "description": "Absent on the last page."
          }
        }
      },
      "RunReport": {
        "type": "object",
        "required": [
          "run_id",
          "pipeline",
          "status",
          "stages",
          "totals",
          "cancel_requested",
          "interrupted"
        ],
        "properties": {
          "run_id": {
            "type": "string"
          },
          "pipeline": {
            "type": "string"
          },
          "status": {
            "$ref": "#/components/schemas/RunStatus"
          },
          "outcome": {
            "type": "string"
          },
          "exit_code": {
            "type": "integer"
          },
          "trigger": {
            "type": "string"
          },
          "params": {
            "type": "object"
          },
          "created_at": {
            "type": "string"
          },
          "started_at": {
            "type": "string"
          },
          "finished_at": {
            "type": "string"
          },
          "duration_ms": {
            "type": "integer"
          },
          "stages": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/StageReport"
            }
          },
          "totals": {
            "type": "object"
          },
          "cancel_requested": {
            "type": "boolean"
          },
          "interrupted": {
            "type": "boolean"
          }
        }
      },
      "StageReport": {
        "type": "object",
        "required": [
          "name",
          "status",
          "tasks"
        ],
        "properties": {
          "name": {
            "type": "string"
          },
          "status": {
            "type": "string"
          },
          "reason": {
            "type": "string"
          },
          "started_at": {
            "type": "string"
          },
          "finished_at": {
            "type": "string"
          },
          "duration_ms": {
            "type": "integer"
          },
          "counters": {
            "type": "object",
            "additionalProperties": {
              "type": "integer"
            }
          },
          "rejected": {
            "type": "integer"
          },
          "metrics": {
            "type": "object"
          },
          "progress": {
            "$ref": "#/components/schemas/StageProgress"
          },
          "waiting": {
            "type": "string"
          },
          "tasks": {
            "type": "array",
            "items": {
              "type": "object",
              "required": [
                "id",
                "key",
                "status",
                "attempts"
              ],
              "properties": {
                "id": {
                  "type": "integer"
                },
                "key": {
                  "type": "string"
                },
                "status": {
                  "type": "string"
                },
                "attempts": {
                  "type": "array",
                  "items": {
                    "type": "object"
                  }
                }
              }
            }
          }
        }
      },
      "Event": {
        "type": "object",
        "required": [
          "id",
          "time",
          "event",
          "message",
          "attrs"
        ],
        "properties": {
          "id": {
            "type": "integer"
          },
          "time": {
            "type": "string"
          },
          "event": {
            "type": "string"
          },
          "stage": {
            "type": "string"
          },
          "task_id": {
            "type": "integer"
          },
          "attempt": {
            "type": "integer"
          },
          "message": {
            "type": "string"
          },
          "attrs": {
            "type": "object",
            "additionalProperties": {
              "type": "string"
            }
          }
        }
      },
      "EventPage": {
        "type": "object",
        "required": [
          "events",
          "next_after",
          "more"
        ],
        "properties": {
          "events": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/Event"
            }
          },
          "next_after": {
            "type": "integer"
          },
          "more": {
            "type": "boolean"
          }
        }
      },
      "StageProgress": {
        "type": "object",
        "required": [
          "stage",
          "done",
          "failed",
          "running",
          "pending",
          "expected",
          "percent",
          "rate_per_second",
          "growing"
        ],
        "properties": {
          "stage": {
            "type": "string"
          },
          "done": {
            "type": "integer"
          },
          "failed": {
            "type": "integer"
          },
          "running": {
            "type": "integer"
          },
          "pending": {
            "type": "integer"
          },
          "expected": {
            "type": "integer"
          },
          "percent": {
            "type": "number"
          },
          "rate_per_second": {
            "type": "number"
          },
          "eta_seconds": {
            "type": "number"
          },
          "growing": {
            "type": "boolean"
          }
        }
      },
      "ProgressPage": {
        "type": "object",
        "required": [
          "run_id",
          "status",
          "stages"
        ],
        "properties": {
          "run_id": {
            "type": "string"
          },
          "status": {
            "$ref": "#/components/schemas/RunStatus"
          },
          "stages": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/StageProgress"
            }
          }
        }
      },
      "Schedule": {
        "type": "object",
        "required": [
          "pipeline",
          "trigger",
          "time_zone",
          "missed",
          "overlap"
        ],
        "properties": {
          "pipeline": {
            "type": "string"
          },
          "trigger": {
            "type": "string"
          },
          "time_zone": {
            "type": "string"
          },
          "next_fire_at": {
            "type": "string"
          },
          "missed": {
            "type": "string"
          },
          "overlap": {
            "type": "string"
          }
        }
      },
      "ArtifactList": {
        "type": "object",
        "required": [
          "items"
        ],
        "properties": {
          "items": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/ArtifactVersion"
            }
          }
        }
      },
      "ArtifactVersion": {
        "type": "object",
        "required": [
          "pipeline",
          "name",
          "version",
          "sha256",
          "size",
          "created_at",
          "file",
          "annotations"
        ],
        "properties": {
          "pipeline": {
            "type": "string"
          },
          "name": {
            "type": "string"
          },
          "version": {
            "type": "integer"
          },
          "sha256": {
            "type": "string"
          },
          "size": {
            "type": "integer"
          },
          "created_at": {
            "type": "string",
            "format": "date-time"
          },
          "run_id": {
            "type": "string"
          },
          "stage": {
            "type": "string"
          },
          "file": {
            "type": "string",
            "description": "The version's file, relative to the artifact's folder (newest/… or historical/…)."
          },
          "annotations": {
            "type": "object",
            "additionalProperties": {
              "type": "string"
            }
          }
        }
      },
      "ScheduleList": {
        "type": "object",
        "required": [
          "serving",
          "items"
        ],
        "properties": {
          "serving": {
            "type": "boolean"
          },
          "items": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/Schedule"
            }
          }
        }
      },
      "Pipeline": {
        "type": "object",
        "required": [
          "name",
          "params",
          "stages",
          "overlap"
        ],
        "properties": {
          "name": {
            "type": "string"
          },
          "description": {
            "type": "string"
          },
          "file": {
            "type": "string"
          },
          "params": {
            "type": "object",
            "additionalProperties": {
              "type": "string"
            }
          },
          "stages": {
            "type": "array",
            "items": {
              "type": "string"
            }
          },
          "overlap": {
            "type": "string"
          },
          "schedule": {
            "$ref": "#/components/schemas/Schedule"
          },
          "on_files": {
            "type": "string"
          }
        }
      },
      "PipelineList": {
        "type": "object",
        "required": [
          "serving",
          "items"
        ],
        "properties": {
          "serving": {
            "type": "boolean"
          },
          "items": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/Pipeline"
            }
          }
        }
      },
      "TriggerBody": {
        "type": "object",
        "properties": {
          "params": {
            "type": "object",
            "additionalProperties": {
              "type": "string"
            }
          },
          "idempotency_key": {
            "type": "string",
            "minLength": 1,
            "maxLength": 200
          }
        }
      },
      "RunCreated": {
        "type": "object",
        "required": [
          "pipeline",
          "status"
        ],
        "properties": {
          "run_id": {
            "type": "string"
          },
          "pipeline": {
            "type": "string"
          },
          "status": {
            "type": "string"
          },
          "active": {
            "type": "array",
            "items": {
              "type": "string"
            }
          }
        }
      },
      "ActionAnswer": {
        "type": "object",
        "required": [
          "run_id",
          "status",
          "detail"
        ],
        "properties": {
          "run_id": {
            "type": "string"
          },
          "status": {
            "type": "string"
          },
          "detail": {
            "type": "string"
          }
        }
      },
      "SessionStatus": {
        "type": "string",
        "enum": [
          "open",
          "complete",
          "timed_out"
        ]
      },
      "SessionMember": {
        "type": "object",
        "required": [
          "pipeline",
          "title",
          "status",
          "late"
        ],
        "properties": {
          "pipeline": {
            "type": "string"
          },
          "title": {
            "type": "string",
            "description": "The member's display name in reports."
          },
          "run_id": {
            "type": "string",
            "description": "The member's run, once one joined."
          },
          "status": {
            "type": "string",
            "description": "The run's status, or `missing` when no run joined yet."
          },
          "late": {
            "type": "boolean",
            "description": "The run ended after the session timed out (reported on its own)."
          }
        }
      },
      "SessionNotification": {
        "type": "object",
        "required": [
          "id",
          "kind",
          "channel",
          "status",
          "attempts"
        ],
        "properties": {
          "id": {
            "type": "integer"
          },
          "kind": {
            "type": "string",
            "description": "run_report, session_complete, session_timeout, session_late, manual_review, …"
          },
          "channel": {
            "type": "string",
            "description": "The channel, without secrets (e.g. `email to ops@example.com`)."
          },
          "status": {
            "type": "string",
            "enum": [
              "pending",
              "delivered",
              "failed"
            ]
          },
          "attempts": {
            "type": "integer"
          },
          "last_error": {
            "type": "string"
          },
          "delivered_at": {
            "type": "string",
            "format": "date-time"
          }
        }
      },
      "Session": {
        "type": "object",
        "required": [
          "session_id",
          "name",
          "title",
          "status",
          "opened_at",
          "deadline",
          "members",
          "missing"
        ],
        "properties": {
          "session_id": {
            "type": "string"
          },
          "name": {
            "type": "string"
          },
          "title": {
            "type": "string"
          },
          "key": {
            "type": "string",
            "description": "The grouping key from the trigger, when the session groups by key."
          },
          "status": {
            "$ref": "#/components/schemas/SessionStatus"
          },
          "opened_at": {
            "type": "string",
            "format": "date-time"
          },
          "deadline": {
            "type": "string",
            "format": "date-time"
          },
          "closed_at": {
            "type": "string",
            "format": "date-time"
          },
          "members": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/SessionMember"
            }
          },
          "missing": {
            "type": "array",
            "items": {
              "type": "string"
            },
            "description": "Members whose runs have not ended."
          },
          "notifications": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/SessionNotification"
            }
          }
        }
      },
      "SessionList": {
        "type": "object",
        "required": [
          "items"
        ],
        "properties": {
          "items": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/Session"
            }
          }
        }
      }
    },
    "responses": {
      "InvalidRequest": {
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        },
        "description": "Invalid parameters or body."
      },
      "Unauthorized": {
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        },
        "description": "No valid token (none, wrong or revoked). Reads need one unless the server is bound to loopback."
      },
      "StoreUnavailable": {
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        },
        "description": "The store cannot be reached, or the server is shutting down."
      },
      "NotFound": {
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        },
        "description": "No such run, task or file."
      },
      "InvalidParameters": {
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        },
        "description": "Invalid parameters."
      },
      "Conflict": {
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        },
        "description": "Nothing to do, or the run is being executed."
      }
    }
  }
}
"""#
}
