-- One database per service (each service owns its data).
CREATE DATABASE intake;
CREATE DATABASE assignment;
CREATE DATABASE progress;
CREATE DATABASE notify;
CREATE DATABASE audit;
