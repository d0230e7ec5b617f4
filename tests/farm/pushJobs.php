<?php
/**
 * Pushes jobs into one wiki's queue in bulk, through MediaWiki's own JobQueueGroup, so the
 * rows are exactly what MediaWiki writes. Part of the jobdrainer test farm (farm.py).
 *
 *   WBS_DOMAIN=wiki1.farm.test MW_CONFIG_FILE=DIR/LocalSettings.php \
 *     php pushJobs.php --count 20000 [--usleep 1000] [--type null|farmProbe] [--tag T]
 *                      [--spin 1000]
 *
 * `null` is MediaWiki's NullJob (sleeps `usleep` microseconds, then succeeds).
 * `farmProbe` is the farm's probe job (defined in the farm's LocalSettings.php): it also
 * appends a JSON line with its push and run times to DIR/logs/probe.jsonl; `--spin` makes
 * it burn CPU (which, unlike sleeping, counts against PHP's max_execution_time).
 */

$IP = getenv( 'MW_INSTALL_PATH' ) ?: '/usr/share/mediawiki';
require_once "$IP/maintenance/Maintenance.php";

use MediaWiki\MediaWikiServices;

class FarmPushJobs extends Maintenance {
	public function __construct() {
		parent::__construct();
		$this->addDescription( 'Push N trivial jobs into this wiki\'s job queue' );
		$this->addOption( 'count', 'Number of jobs to push', true, true );
		$this->addOption( 'usleep', 'Microseconds each job sleeps when run (default 0)', false, true );
		$this->addOption( 'spin', 'Microseconds of CPU each job burns (farmProbe only)', false, true );
		$this->addOption( 'type', 'null (NullJob, default) or farmProbe', false, true );
		$this->addOption( 'tag', 'Free text copied into each probe job (farmProbe only)', false, true );
		$this->addOption( 'chunk', 'Jobs per JobQueueGroup::push() call (default 1000)', false, true );
	}

	public function execute() {
		$count = (int)$this->getOption( 'count' );
		$usleep = (int)$this->getOption( 'usleep', 0 );
		$type = $this->getOption( 'type', 'null' );
		$tag = $this->getOption( 'tag', '' );
		$spin = (int)$this->getOption( 'spin', 0 );
		$chunk = max( 1, (int)$this->getOption( 'chunk', 1000 ) );
		if ( $type !== 'null' && $type !== 'farmProbe' ) {
			$this->fatalError( "unknown --type $type (null or farmProbe)" );
		}
		$group = MediaWikiServices::getInstance()->getJobQueueGroup();
		$pushed = 0;
		while ( $pushed < $count ) {
			$jobs = [];
			$n = min( $chunk, $count - $pushed );
			for ( $i = 0; $i < $n; $i++ ) {
				if ( $type === 'null' ) {
					$jobs[] = new NullJob( [ 'usleep' => $usleep ] );
				} else {
					$jobs[] = new FarmProbeJob( [
						'usleep' => $usleep,
						'spin' => $spin,
						'tag' => $tag,
						'seq' => $pushed + $i,
						'pushed' => microtime( true ),
					] );
				}
			}
			$group->push( $jobs );
			$pushed += $n;
		}
		$this->output( "pushed $pushed $type jobs\n" );
	}
}

$maintClass = FarmPushJobs::class;
require_once RUN_MAINTENANCE_IF_MAIN;
