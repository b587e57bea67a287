#include <sqlite3.h>
#include "CSQLiteTuning.h"

int sluice_sqlite_tune(void) {
    // Multi-thread mode: GRDB uses each connection from one thread at a time (its queues), so the
    // per-connection mutex that the default serialized mode takes in every call (each bind, step and
    // column read) only costs time. Memory statistics take a global mutex at every allocation.
    if (sqlite3_config(SQLITE_CONFIG_MULTITHREAD) != SQLITE_OK) return 0;
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    return 1;
}
