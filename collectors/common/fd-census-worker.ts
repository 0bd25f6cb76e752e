// Worker-thread entry for the socket census: counts its share of pids and posts the rows back.
import { parentPort, workerData } from 'node:worker_threads';
import { censusSockets, type CensusRequest } from './fd-census.js';

parentPort?.postMessage(censusSockets(workerData as CensusRequest));
