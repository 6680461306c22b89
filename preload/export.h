/* export.h — the one mark for symbols the library exports (all else hidden). */
#ifndef TCPSPOOL_EXPORT_H
#define TCPSPOOL_EXPORT_H
#define TCPSPOOL_EXPORT __attribute__((visibility("default")))
#endif
