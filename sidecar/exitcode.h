/* exitcode.h - the exit codes of the operator commands (cli.h, steer.h), in one place
 * both include: a command module never reaches into another for them. Leaf header. */
#ifndef JD_EXITCODE_H
#define JD_EXITCODE_H

enum {
	CLI_OK = 0,
	CLI_FAILED = 1, /* the database or MediaWiki failed */
	CLI_USAGE = 2,
	CLI_BUSY = 3,      /* drain: another sidecar holds the wiki's lease */
	CLI_NOT_FOUND = 4, /* drain, status --wiki, pause, resume: discovery does not list it */
};

#endif
