/* version.h - the one place the release number lives. */
#ifndef JD_VERSION_H
#define JD_VERSION_H

#define JD_VERSION "0.1.0"

#endif
