#ifndef CSQLITE_TUNING_H
#define CSQLITE_TUNING_H

/// Configures SQLite for this process before it initializes (`sqlite3_config` is variadic, which Swift
/// cannot call): connections without a mutex of their own, and no memory statistics. Returns 1 when
/// applied, 0 when SQLite was already initialized in this process (then nothing changed).
int sluice_sqlite_tune(void);

#endif
